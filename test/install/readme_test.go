package install

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEOpensWithTheTwoCommands checks that the README opens with `make dev` and
// `make test`: the title, then a shell block holding those two commands first.
func TestREADMEOpensWithTheTwoCommands(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var body []string
	for _, l := range lines[1:] {
		if strings.TrimSpace(l) != "" {
			body = append(body, l)
		}
		if len(body) == 3 {
			break
		}
	}
	if !strings.HasPrefix(lines[0], "# claimguard") || len(body) < 3 || body[0] != "```sh" ||
		!strings.HasPrefix(body[1], "make dev ") || !strings.HasPrefix(body[2], "make test ") {
		t.Errorf("README.md must open with its title and a sh block of `make dev` then `make test`, got %q %q", lines[0], body)
	}
}

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
)

// anchor is GitHub's anchor of a heading: lower case, punctuation dropped, spaces to "-".
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestREADMELinks checks that every relative link of the README and the chart's README
// names a file of the repository, and every #anchor a heading of that file. Links inside
// code blocks are not links.
func TestREADMELinks(t *testing.T) {
	for _, file := range []string{"README.md", "charts/claimguard/README.md"} {
		data, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		fenced := false
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "```") {
				fenced = !fenced
				continue
			}
			if !fenced {
				text.WriteString(l + "\n")
			}
		}
		checked := 0
		for _, m := range mdLink.FindAllStringSubmatch(text.String(), -1) {
			target := m[1]
			if strings.Contains(target, "://") {
				continue
			}
			checked++
			path, frag, _ := strings.Cut(target, "#")
			full := filepath.Join(root, filepath.Dir(file), path)
			if !strings.HasPrefix(full, root+string(filepath.Separator)) {
				t.Errorf("%s: link %s leaves the repository", file, target)
				continue
			}
			if _, err := os.Stat(full); err != nil {
				t.Errorf("%s: link %s: %v", file, target, err)
				continue
			}
			if frag == "" || !strings.HasSuffix(full, ".md") {
				continue
			}
			doc, err := os.ReadFile(full)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, h := range mdHeading.FindAllStringSubmatch(string(doc), -1) {
				found = found || anchor(strings.ReplaceAll(h[1], "`", "")) == frag
			}
			if !found {
				t.Errorf("%s: link %s: no heading with anchor #%s in %s", file, target, frag, path)
			}
		}
		if checked < 3 {
			t.Errorf("%s: only %d relative links checked; the link parser is probably broken", file, checked)
		}
	}
}
