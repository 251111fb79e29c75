package main

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shmexec/shmexec/executor"
)

func TestVersionMatchesHeader(t *testing.T) {
	h, err := os.ReadFile("../../include/shmexec.h")
	if err != nil {
		t.Fatal(err)
	}
	part := func(name string) string {
		m := regexp.MustCompile(`#define SHMX_VERSION_` + name + ` (\d+)`).FindSubmatch(h)
		if m == nil {
			t.Fatalf("no SHMX_VERSION_%s in the header", name)
		}
		return string(m[1])
	}
	if want := part("MAJOR") + "." + part("MINOR") + "." + part("PATCH"); executor.Version != want {
		t.Fatalf("executor.Version %q, header %q", executor.Version, want)
	}
}

func TestRenderNamesEverything(t *testing.T) {
	s := executor.Stats{
		State: "open", SupervisorPID: 42, Submitted: 10, Collected: 9, Queued: 1, StartFailure: "the workers' initializer failed",
		Failed:  map[string]uint64{"worker_crashed": 2, "timeout": 1},
		Workers: []executor.WorkerStats{{PID: 1001, State: "busy", Current: 3, Job: 77, Done: 5, Restarts: 1}},
		Clients: []executor.ClientStats{{Index: 0, PID: 42, State: "active"}, {Index: 2, PID: 4242, State: "dead", Slots: 3}},
	}
	var b strings.Builder
	render(&b, s, 123, "/tmp/x.sock", time.Unix(0, 0))
	out := b.String()
	for _, want := range []string{"supervisor pid 42", "open", "NO WORKER CAN START", "initializer failed", "queued 1", "throughput 123 jobs/s", "timeout 1, worker_crashed 2",
		"1001", "busy", "77 (slot 3)", "4242", "dead"} {
		if !strings.Contains(out, want) {
			t.Errorf("the view lacks %q:\n%s", want, out)
		}
	}
}

// TestMain lets a test run this command: the test binary, re-executed
// with SHMEXEC_CMD_AS_MAIN=1, is shmexec with the arguments it got.
func TestMain(m *testing.M) {
	if os.Getenv("SHMEXEC_CMD_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestExitStatus(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string // in stdout and stderr together
	}{
		{[]string{"serve", "-h"}, 0, "-socket string"},
		{[]string{"stat", "--help"}, 0, "-interval duration"},
		{[]string{"help"}, 0, "shmexec serve --socket PATH"},
		{[]string{"serve", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"stat"}, 2, "need --socket PATH"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{nil, 2, "usage:"},
	} {
		cmd := exec.Command(os.Args[0], c.args...)
		cmd.Env = append(os.Environ(), "SHMEXEC_CMD_AS_MAIN=1")
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("shmexec %q: exit %d, want %d; output %q lacks %q?", c.args, code, c.code, out, c.want)
		}
		if c.code == 0 && strings.Contains(string(out), "help requested") {
			t.Errorf("shmexec %q: reports -h as an error: %q", c.args, out)
		}
	}
}
