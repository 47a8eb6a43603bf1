package main

// The metric families the operator defines, as `sluice-operator metrics` prints them: one per
// line, name, type and comma-separated labels, tab-separated (then the help text).

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

type family struct {
	kind   string
	labels map[string]bool
}

// families by name.
type families map[string]family

func readFamilies(path string) (families, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	known := families{}
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		fields := strings.Split(scanner.Text(), "\t")
		if len(fields) < 3 {
			return nil, fmt.Errorf("%s: not name, type, labels: %q", path, scanner.Text())
		}
		labels := map[string]bool{}
		for _, l := range strings.Split(fields[2], ",") {
			if l != "" {
				labels[l] = true
			}
		}
		known[fields[0]] = family{kind: fields[1], labels: labels}
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if len(known) == 0 {
		return nil, fmt.Errorf("%s: no metric families", path)
	}
	return known, nil
}

// series resolves a series name to its family and labels: a histogram's series are
// `<name>_bucket` (with `le`), `<name>_sum` and `<name>_count`, never `<name>` itself.
func (known families) series(name string) (string, map[string]bool, bool) {
	if f, ok := known[name]; ok && f.kind != "histogram" {
		return name, f.labels, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		if f, ok := known[base]; found && ok && f.kind == "histogram" {
			if suffix == "_bucket" {
				return base, withLabel(f.labels, "le"), true
			}
			return base, f.labels, true
		}
	}
	return "", nil, false
}

func withLabel(labels map[string]bool, extra string) map[string]bool {
	all := map[string]bool{extra: true}
	for l := range labels {
		all[l] = true
	}
	return all
}
