// Package cli holds the claimguard command line: one file per subcommand,
// each an options struct with AddFlags and Validate.
package cli
