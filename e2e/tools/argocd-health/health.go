package main

import (
	"context"
	"fmt"
	"os"

	healthutil "github.com/argoproj/argo-cd/gitops-engine/v3/pkg/health"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/argoproj/argo-cd/v3/util/errors"
	"github.com/argoproj/argo-cd/v3/util/lua"
)

// assessHealth reads the resource at resPath, loads the resource overrides (the
// resource.customizations* keys) of the argocd-cm at cmPath, and prints the health Argo CD's
// gitops-engine gives it with Argo CD's Lua VM evaluating those overrides' health scripts.
func assessHealth(ctx context.Context, resPath, cmPath string) {
	data, err := os.ReadFile(resPath)
	errors.CheckError(err)
	res := unstructured.Unstructured{}
	errors.CheckError(yaml.Unmarshal(data, &res))

	manager, err := settingsManager(ctx, cmPath)
	errors.CheckError(err)
	overrides, err := manager.GetResourceOverrides()
	errors.CheckError(err)

	gvk := res.GroupVersionKind()
	resHealth, err := healthutil.GetResourceHealth(&res, lua.ResourceHealthOverrides(overrides))
	switch {
	case err != nil:
		errors.CheckError(err)
	case resHealth == nil:
		fmt.Printf("Health script is not configured for '%s/%s'\n", gvk.Group, gvk.Kind)
	default:
		fmt.Printf("STATUS: %s\n", resHealth.Status)
		fmt.Printf("MESSAGE: %s\n", resHealth.Message)
	}
}
