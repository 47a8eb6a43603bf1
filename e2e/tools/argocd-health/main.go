// Command argocd-health assesses a resource's health with the Lua health scripts of an argocd-cm
// ConfigMap, through Argo CD's own code: what `argocd admin settings resource-overrides health
// RESOURCE_YAML_PATH --argocd-cm-path ARGOCD_CM_PATH` does (Argo CD v3.6.1,
// cmd/argocd/commands/admin/settings.go), without the rest of the argocd CLI (API client, server,
// repo server, controllers), so that it builds in a fraction of the CLI's time.
//
//	argocd-health RESOURCE_YAML_PATH --argocd-cm-path ARGOCD_CM_PATH
//
// Prints "STATUS: <status>" and "MESSAGE: <message>" as the CLI does, or "Health script is not
// configured for '<group>/<kind>'". Errors are logged as a JSON "fatal" line on stderr and exit
// with Argo CD's generic error code (20), as the CLI does.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/argoproj/argo-cd/v3/util/cli"
	"github.com/argoproj/argo-cd/v3/util/errors"
	"github.com/argoproj/argo-cd/v3/util/log"
)

func main() {
	// As the argocd binary's main and the argocd CLI's initConfig (defaults of --logformat and
	// --loglevel) set up logging.
	klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig()))
	cli.SetLogFormat("json")
	cli.SetLogLevel("info")

	flags := pflag.NewFlagSet("argocd-health", pflag.ExitOnError)
	cmPath := flags.String("argocd-cm-path", "", "Path to local argocd-cm.yaml file")
	errors.CheckError(flags.Parse(os.Args[1:]))
	if flags.NArg() != 1 || *cmPath == "" {
		fmt.Fprintln(os.Stderr, "usage: argocd-health RESOURCE_YAML_PATH --argocd-cm-path ARGOCD_CM_PATH")
		os.Exit(1)
	}
	assessHealth(context.Background(), flags.Arg(0), *cmPath)
}
