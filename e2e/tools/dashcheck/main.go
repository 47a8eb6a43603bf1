// Command dashcheck checks Grafana dashboards the way Grafana and Prometheus read them: each file
// must unmarshal strictly with the Grafana Foundation SDK (no unknown field, no wrong type, known
// panel types, Prometheus queries), and every panel and variable query must parse as PromQL and
// select only metric families that the operator defines, with their labels.
//
//	dashcheck -metrics FAMILIES DASHBOARD.json...
//
// FAMILIES is what `sluice-operator metrics` prints. Prints one line per dashboard, or one per
// problem and exits 1.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	metrics := flag.String("metrics", "", "file with the metric families (`sluice-operator metrics`)")
	flag.Parse()
	if *metrics == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: dashcheck -metrics FAMILIES DASHBOARD.json...")
		os.Exit(2)
	}
	known, err := readFamilies(*metrics)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	failed := false
	for _, path := range flag.Args() {
		summary, problems := checkFile(path, known)
		for _, p := range problems {
			fmt.Printf("%s: %s\n", path, p)
		}
		if len(problems) > 0 {
			failed = true
			continue
		}
		fmt.Printf("%s: ok: %s\n", path, summary)
	}
	if failed {
		os.Exit(1)
	}
}

// checkFile checks one dashboard: its schema, then each of its queries.
func checkFile(path string, known families) (string, []string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", []string{err.Error()}
	}
	board, err := loadDashboard(raw)
	if err != nil {
		return "", []string{"not a valid Grafana dashboard: " + err.Error()}
	}
	queries, problems := collectQueries(board)
	used := map[string]bool{}
	for _, q := range queries {
		names, err := checkQuery(q.expr, q.labels, known)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", q.where, err))
		}
		for _, n := range names {
			used[n] = true
		}
	}
	summary := fmt.Sprintf("%d panels, %d queries, %d metric families", len(panels(board)), len(queries), len(used))
	return summary, problems
}
