package install

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDockerfileBuildContext checks what can be checked of the image without a container
// engine: the build stage copies every directory the binary is built from (and
// .dockerignore lets them into the context), the binary is static, and the final stage is
// distroless and runs as non-root.
func TestDockerfileBuildContext(t *testing.T) {
	stdout, errOut, err := runCmd(t, "go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".")
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, errOut)
	}
	const module = "github.com/claimguard/claimguard"
	need := map[string]bool{}
	for _, p := range strings.Fields(stdout) {
		rest, ok := strings.CutPrefix(p, module+"/")
		if !ok {
			continue
		}
		need[strings.SplitN(rest, "/", 2)[0]+"/"] = true
	}
	if len(need) < 3 {
		t.Fatalf("the binary seems to import only %v of the module", need)
	}
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	copied := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^COPY (\S+) `).FindAllStringSubmatch(string(dockerfile), -1) {
		copied[m[1]] = true
	}
	allowed := strings.Fields(string(ignore))
	for dir := range need {
		if !copied[dir] {
			t.Errorf("the binary imports packages under %s, which the Dockerfile does not COPY", dir)
		}
		if !slices.Contains(allowed, "!"+dir) {
			t.Errorf(".dockerignore keeps %s out of the build context", dir)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "FROM gcr.io/distroless/static", ":nonroot", "USER 65532:65532", `ENTRYPOINT ["/claimguard"]`} {
		if !strings.Contains(string(dockerfile), want) {
			t.Errorf("the Dockerfile has no %q", want)
		}
	}
	// The dev key and everything else stay out: the context is an allow-list.
	if !slices.Contains(allowed, "*") {
		t.Error(".dockerignore must start from excluding everything (*)")
	}
}
