// Package v1alpha1 contains the JWTPolicy API of the auth.claimguard.dev group.
//
// +kubebuilder:object:generate=true
// +groupName=auth.claimguard.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the JWTPolicy API.
	GroupVersion = schema.GroupVersion{Group: "auth.claimguard.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the API types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types in this group-version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
