package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The toolchain that runs the tests is the one CI builds the library
// with: its runtime must take the changes, or the library would quietly
// be built without them.
func TestPatchFitsThisToolchain(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "src", "runtime", "proc.go"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Patch(src)
	if err != nil {
		t.Fatalf("%s: %v: rtpatch's texts must be the runtime's exitsyscall and sysmon", runtime.Version(), err)
	}
	grown := 0
	for _, e := range edits {
		grown += len(e.new) - len(e.old)
		if !bytes.Contains(out, []byte(e.new)) {
			t.Fatalf("the changed proc.go lacks %q", e.new)
		}
	}
	if len(out) != len(src)+grown {
		t.Fatal("the changes are not the edits' and nothing else")
	}
	if bytes.Count(out, []byte("pp.schedtick++")) != bytes.Count(src, []byte("pp.schedtick++"))+1 {
		t.Fatal("not exactly one more schedtick increment")
	}
	// sysmon's back-off: a syscall wake starts it (idle past 50, where
	// the delay doubles), and no other reset of idle changed.
	if bytes.Count(out, []byte("idle = 51")) != 1 || bytes.Count(out, []byte("idle = 0")) != bytes.Count(src, []byte("idle = 0"))-1 {
		t.Fatal("sysmon's reset after a syscall wake is not the one line changed")
	}
}

func TestPatchRefusesWhatItDoesNotFit(t *testing.T) {
	first, second, needs := edits[0].old, edits[1].old, edits[1].needs
	for name, src := range map[string]string{
		"neither":                  "package runtime\n\nfunc exitsyscall() {}\n",
		"only exitsyscall's":       "package runtime\n" + first,
		"only sysmon's":            "package runtime\n" + needs + second,
		"two of one":               "package runtime\n" + first + first + needs + second,
		"re-indented":              strings.ReplaceAll("package runtime\n"+first+needs+second, "\t\t", "\t"),
		"sysmon's other threshold": "package runtime\n" + first + strings.Replace(needs, "50", "100", 1) + second,
	} {
		if _, err := Patch([]byte(src)); !errors.Is(err, errNoAnchor) {
			t.Errorf("%s: err = %v, want errNoAnchor", name, err)
		}
	}
	if out, err := Patch([]byte("package runtime\n" + first + needs + second)); err != nil || string(out) != "package runtime\n"+edits[0].new+needs+edits[1].new {
		t.Errorf("every text once: %q, %v", out, err)
	}
}

// What the Makefile and setup.py run: the flags on stdout, an overlay
// that replaces exactly the toolchain's proc.go with the changed copy, and
// status 3 with nothing on stdout for a toolchain the change does not fit.
func TestCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	bin := filepath.Join(t.TempDir(), "rtpatch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	out, err := exec.Command(bin, "-out", dir).Output()
	if err != nil {
		t.Fatalf("rtpatch: %v", err)
	}
	overlay := filepath.Join(dir, "overlay.json")
	if got, want := strings.TrimSpace(string(out)), "-overlay="+overlay+" -tags="+Tag; got != want {
		t.Fatalf("stdout %q, want %q", got, want)
	}
	var o struct{ Replace map[string]string }
	b, err := os.ReadFile(overlay)
	if err != nil || json.Unmarshal(b, &o) != nil {
		t.Fatalf("overlay.json: %v %s", err, b)
	}
	gr, _ := exec.Command("go", "env", "GOROOT").Output()
	orig := filepath.Join(strings.TrimSpace(string(gr)), "src", "runtime", "proc.go")
	if len(o.Replace) != 1 || o.Replace[orig] != filepath.Join(dir, "proc.go") {
		t.Fatalf("overlay replaces %v, want only %s", o.Replace, orig)
	}
	changed, _ := os.ReadFile(filepath.Join(dir, "proc.go"))
	for _, e := range edits {
		if !bytes.Contains(changed, []byte(e.new)) {
			t.Fatalf("the overlay's proc.go lacks %q", e.new)
		}
	}

	// A toolchain whose proc.go does not fit: no flags, status 3.
	fake := t.TempDir()
	if err := os.MkdirAll(filepath.Join(fake, "src", "runtime"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fake, "src", "runtime", "proc.go"), []byte("package runtime\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-goroot", fake, "-out", t.TempDir())
	out, err = cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || len(out) != 0 {
		t.Fatalf("unfitting toolchain: err %v, stdout %q; want status 3 and nothing", err, out)
	}
}
