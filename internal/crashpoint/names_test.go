package crashpoint

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestNamesAgree checks that the crash points listed in Names, the steps
// named in docs/PROTOCOL.md, the calls to Hit in the code and the step
// labels of the Promela models are one set.
func TestNamesAgree(t *testing.T) {
	root := filepath.Join("..", "..")
	listed := map[string]bool{}
	for _, n := range Names {
		if listed[n] {
			t.Errorf("Names lists %q twice", n)
		}
		listed[n] = true
	}

	doc, err := os.ReadFile(filepath.Join(root, "docs", "PROTOCOL.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`((?:ring|job)(?:\\.[a-z_]+)+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}

	called := map[string]bool{}
	hit := regexp.MustCompile(`crashpoint\.Hit\("([^"]+)"\)`)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "build") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range hit.FindAllStringSubmatch(string(b), -1) {
			called[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The Promela models label the crash transition after each step with
	// the step's name, dots written as underscores.
	modeled := map[string]bool{}
	models, _ := filepath.Glob(filepath.Join(root, "docs", "model", "*.pml"))
	if len(models) == 0 {
		t.Fatal("no models in docs/model")
	}
	label := regexp.MustCompile(`(?m)^\s*((?:ring|job)_[a-z_]+):`)
	for _, path := range models {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range label.FindAllStringSubmatch(string(b), -1) {
			modeled[strings.ReplaceAll(m[1], "_", ".")] = true
		}
	}
	compare(t, "Names", listed, "docs/PROTOCOL.md", documented)
	compare(t, "Names", listed, "calls to Hit", called)
	compare(t, "Names", listed, "labels in docs/model/*.pml", modeled)
}

func compare(t *testing.T, an string, a map[string]bool, bn string, b map[string]bool) {
	t.Helper()
	var onlyA, onlyB []string
	for k := range a {
		if !b[k] {
			onlyA = append(onlyA, k)
		}
	}
	for k := range b {
		if !a[k] {
			onlyB = append(onlyB, k)
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	if len(onlyA) > 0 {
		t.Errorf("in %s but not in %s: %v", an, bn, onlyA)
	}
	if len(onlyB) > 0 {
		t.Errorf("in %s but not in %s: %v", bn, an, onlyB)
	}
}
