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
// with: its runtime must take the change, or the library would quietly
// be built without it.
func TestPatchFitsThisToolchain(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(runtime.GOROOT(), "src", "runtime", "proc.go"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Patch(src)
	if err != nil {
		t.Fatalf("%s: %v: rtpatch's anchor must follow the runtime's exitsyscall", runtime.Version(), err)
	}
	if len(out) != len(src)+len(added) || !bytes.Contains(out, []byte(anchor+added)) {
		t.Fatal("the change is not the anchor followed by the added lines, and nothing else")
	}
	if bytes.Count(out, []byte("pp.schedtick++")) != bytes.Count(src, []byte("pp.schedtick++"))+1 {
		t.Fatal("not exactly one more schedtick increment")
	}
}

func TestPatchRefusesWhatItDoesNotFit(t *testing.T) {
	for name, src := range map[string]string{
		"no anchor":   "package runtime\n\nfunc exitsyscall() {}\n",
		"two":         "package runtime\n" + anchor + anchor,
		"re-indented": strings.ReplaceAll("package runtime\n"+anchor, "\t\t", "\t"),
	} {
		if _, err := Patch([]byte(src)); !errors.Is(err, errNoAnchor) {
			t.Errorf("%s: err = %v, want errNoAnchor", name, err)
		}
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
	if !bytes.Contains(changed, []byte(anchor+added)) {
		t.Fatal("the overlay's proc.go lacks the change")
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
