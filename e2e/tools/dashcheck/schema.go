package main

// The dashboard as the Grafana Foundation SDK reads it, strictly.

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

func init() {
	// Panel options and queries are only read strictly for the plugins the runtime knows.
	plugins.RegisterDefaultPlugins()
}

// A query to check, where it is, and labels its series must have (a label_values variable's).
type query struct {
	where  string
	expr   string
	labels []string
}

// loadDashboard unmarshals strictly (unknown fields, missing required fields and wrong types are
// errors, at any depth) and validates, then reads the content.
//
// The SDK's strict unmarshalers (v0.0.22) return their error list even when it is empty: a
// non-nil error, so each parent drops that child (every panel, every target) while adding its
// (empty) errors. Every error is still reported, but the object it builds is incomplete, so the
// content is read by the SDK's ordinary unmarshaler once the strict pass found nothing.
func loadDashboard(raw []byte) (*dashboard.Dashboard, error) {
	var strict dashboard.Dashboard
	if err := failure(strict.UnmarshalJSONStrict(raw)); err != nil {
		return nil, err
	}
	var board dashboard.Dashboard
	if err := json.Unmarshal(raw, &board); err != nil {
		return nil, err
	}
	if err := failure(board.Validate()); err != nil {
		return nil, err
	}
	return &board, nil
}

// failure is err unless it is the SDK's empty error list.
func failure(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}

// panels are the dashboard's panels, those in rows included.
func panels(board *dashboard.Dashboard) []dashboard.Panel {
	var all []dashboard.Panel
	for _, p := range board.Panels {
		if p.Panel != nil {
			all = append(all, *p.Panel)
		}
		if p.RowPanel != nil {
			all = append(all, p.RowPanel.Panels...)
		}
	}
	return all
}

// collectQueries lists the PromQL of every panel target and query variable. A panel type or a
// query the SDK would not read strictly (an unknown plugin falls back to a loose bag of fields)
// is a problem.
func collectQueries(board *dashboard.Dashboard) ([]query, []string) {
	var queries []query
	var problems []string
	for _, p := range panels(board) {
		title := fmt.Sprintf("panel %q", deref(p.Title))
		if _, ok := cog.ConfigForPanelcfgVariant(p.Type); !ok {
			problems = append(problems, fmt.Sprintf("%s: panel type %q is unknown to the SDK", title, p.Type))
		}
		for i, target := range p.Targets {
			prom, ok := target.(*prometheus.Dataquery)
			// The strict pass reads a target as a Prometheus query only by its own datasource.
			if !ok || prom.Datasource == nil || deref(prom.Datasource.Type) != "prometheus" {
				problems = append(problems, fmt.Sprintf("%s: target %d has no datasource of type prometheus", title, i))
				continue
			}
			queries = append(queries, query{fmt.Sprintf("%s target %s", title, deref(prom.RefId)), prom.Expr, nil})
		}
	}
	for _, v := range board.Templating.List {
		if v.Type != dashboard.VariableTypeQuery {
			continue
		}
		where := fmt.Sprintf("variable %q", v.Name)
		q, err := variableQuery(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		q.where = where
		queries = append(queries, q)
	}
	return queries, problems
}

// Grafana's Prometheus variable queries: label_values(selector, label) and query_result(expr).
var (
	labelValues = regexp.MustCompile(`^\s*label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)
	queryResult = regexp.MustCompile(`^\s*query_result\((.+)\)\s*$`)
)

// variableQuery is the PromQL a query variable runs. For label_values the label must be one the
// selector's series carry.
func variableQuery(v dashboard.VariableModel) (query, error) {
	if v.Datasource == nil || deref(v.Datasource.Type) != "prometheus" {
		return query{}, fmt.Errorf("the datasource is not of type prometheus")
	}
	text := ""
	switch {
	case v.Query == nil:
	case v.Query.String != nil:
		text = *v.Query.String
	case v.Query.Map != nil:
		text, _ = v.Query.Map["query"].(string)
	}
	if m := labelValues.FindStringSubmatch(text); m != nil {
		return query{expr: m[1], labels: []string{m[2]}}, nil
	}
	if m := queryResult.FindStringSubmatch(text); m != nil {
		return query{expr: m[1]}, nil
	}
	return query{}, fmt.Errorf("query %q is neither label_values(selector, label) nor query_result(expr)", text)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
