package main

import (
	"context"
	"os"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/argoproj/argo-cd/v3/common"
	"github.com/argoproj/argo-cd/v3/util/errors"
	"github.com/argoproj/argo-cd/v3/util/settings"
)

// settingsManager is Argo CD's SettingsManager over the argocd-cm ConfigMap read from cmPath and
// the placeholder argocd-secret the CLI uses when no secret is given, served by a fake clientset
// in namespace "default", as the CLI's createSettingsManager builds it for --argocd-cm-path.
func settingsManager(ctx context.Context, cmPath string) (*settings.SettingsManager, error) {
	data, err := os.ReadFile(cmPath)
	if err != nil {
		return nil, err
	}
	var argocdCM *corev1.ConfigMap
	if err := yaml.Unmarshal(data, &argocdCM); err != nil {
		return nil, err
	}
	markAsSettings(argocdCM)
	argocdSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: common.ArgoCDSecretName},
		Data: map[string][]byte{
			"admin.password":   []byte("test"),
			"server.secretkey": []byte("test"),
		},
	}
	markAsSettings(argocdSecret)
	manager := settings.NewSettingsManager(ctx, fake.NewClientset(argocdSecret, argocdCM), "default")
	errors.CheckError(manager.ResyncInformers())
	return manager, nil
}

// markAsSettings puts obj where the SettingsManager's informers look: namespace "default", label
// app.kubernetes.io/part-of=argocd.
func markAsSettings(obj metav1.Object) {
	obj.SetNamespace("default")
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels["app.kubernetes.io/part-of"] = "argocd"
	obj.SetLabels(labels)
}
