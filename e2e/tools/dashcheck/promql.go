package main

// Queries as Prometheus parses them, and the metric families they select.

import (
	"fmt"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// Grafana's built-in interval variables, replaced by a duration before parsing. Any other `$`
// outside a string (a dashboard variable in a range, say) is left and fails to parse.
var builtins = strings.NewReplacer(
	"${__rate_interval}", "5m", "$__rate_interval", "5m",
	"${__interval}", "1m", "$__interval", "1m",
	"${__range}", "1h", "$__range", "1h",
)

// checkQuery parses expr as PromQL (Prometheus's defaults: no experimental functions) and checks
// that every vector selector names a known series, by name, with known labels, and that its
// series carry the labels `need`. Returns the families selected.
func checkQuery(expr string, need []string, known families) ([]string, error) {
	node, err := parser.NewParser(parser.Options{}).ParseExpr(builtins.Replace(expr))
	if err != nil {
		return nil, fmt.Errorf("not PromQL: %v", err)
	}
	var problems []string
	used := map[string]bool{}
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		selector, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		family, labels, ok := known.series(selector.Name)
		if !ok {
			problems = append(problems, fmt.Sprintf("%q is not a series the operator exposes", selector.String()))
			return nil
		}
		used[family] = true
		names := append([]string(nil), need...)
		for _, m := range selector.LabelMatchers {
			if m.Name != "__name__" {
				names = append(names, m.Name)
			}
		}
		for _, name := range names {
			if !labels[name] {
				problems = append(problems, fmt.Sprintf("%s has no label %q", selector.Name, name))
			}
		}
		return nil
	})
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(problems) > 0 {
		return names, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return names, nil
}
