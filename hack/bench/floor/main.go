// Command floor is the HTTP floor of the forward-auth benchmark: a Go
// net/http server that answers every request 200 with an empty body and does
// nothing else, so its requests/s is what the machine, net/http and wrk allow
// before any token work.
package main

import (
	"flag"
	"log"
	"net/http"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18000", "listen address")
	flag.Parse()
	srv := &http.Server{
		Addr:              *listen,
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
		}),
	}
	log.Fatal(srv.ListenAndServe())
}
