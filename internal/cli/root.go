package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes shared by every command. explain gives ExitDenied a meaning of
// its own: the token was denied.
const (
	ExitOK     = 0
	ExitError  = 1
	ExitDenied = 1
	ExitUsage  = 2
)

// ExitCodeError carries the exit code a command wants. Err, when set, is
// printed as the one-line reason; a nil Err exits silently (the command has
// already said everything on stdout).
type ExitCodeError struct {
	Code int
	Err  error
}

func (e *ExitCodeError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitCodeError) Unwrap() error { return e.Err }

// usageError marks bad flags or arguments: exit 2 with one line.
func usageError(format string, args ...any) error {
	return &ExitCodeError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// NewRootCommand builds the claimguard command with every subcommand.
func NewRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "claimguard",
		Short: "JWT policies for ingress traffic, enforced by forward-auth",
		Long: `claimguard checks the JWT of every request that reaches a guarded Ingress or
HTTPRoute: signature, issuer, audience, lifetime and required claims. Requests
that fail are turned away with 401 or 403 and a reason code.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// A bare "claimguard" shows the help instead of doing nothing.
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("unknown command %q for \"claimguard\"; see 'claimguard --help'", args[0])
			}
			return cmd.Help()
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError("%s: %v; see '%s --help'", cmd.CommandPath(), err, cmd.CommandPath())
	})
	for _, sub := range subcommands(stdout, stderr) {
		root.AddCommand(sub)
	}
	return root
}

// subcommands lists the commands that exist; each file registers its own.
func subcommands(stdout, stderr io.Writer) []*cobra.Command {
	return []*cobra.Command{
		newManagerCommand(stdout, stderr),
		newServeCommand(stdout, stderr),
		newExplainCommand(stdout, stderr),
	}
}

// Execute runs the command line and returns the process exit code. Errors are
// printed to stderr as one line.
func Execute(args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	code := ExitError
	var ec *ExitCodeError
	if errors.As(err, &ec) {
		code = ec.Code
		if ec.Err == nil {
			return code
		}
	} else if strings.HasPrefix(err.Error(), "unknown command") {
		code = ExitUsage
	}
	fmt.Fprintln(stderr, "error: "+oneLine(err.Error()))
	return code
}

// oneLine folds a multi-line error into one line, so every failure is a
// single line that scripts can show.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
