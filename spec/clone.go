package spec

import (
	"reflect"
	"slices"
)

// Clone returns a deep copy of s.
func (s Spec) Clone() Spec {
	out := s
	out.VIPs = slices.Clone(s.VIPs)
	out.Services = nil
	if s.Services != nil {
		out.Services = make([]Service, len(s.Services))
		for i, svc := range s.Services {
			out.Services[i] = svc.Clone()
		}
	}
	out.Fencing = s.Fencing.Clone()
	out.Resources = cloneResources(s.Resources)
	return out
}

// Clone returns a deep copy of svc.
func (svc Service) Clone() Service {
	out := svc
	out.RealServers.Servers = slices.Clone(svc.RealServers.Servers)
	if svc.Fallback != nil {
		fb := *svc.Fallback
		out.Fallback = &fb
	}
	if svc.HealthCheck != nil {
		hc := *svc.HealthCheck
		hc.ExpectStatus = slices.Clone(hc.ExpectStatus)
		hc.Command = slices.Clone(hc.Command)
		out.HealthCheck = &hc
	}
	return out
}

// Normalized returns a deep copy of s in which every empty slice is nil.
// JSON drops empty "omitempty" slices and keeps other empty slices as [], so
// without this a spec could change shape across a snapshot or a forwarded
// request, and an unchanged spec could look changed.
func (s Spec) Normalized() Spec {
	out := s.Clone()
	out.Fencing = out.Fencing.normalized()
	out.Resources = normalizedResources(out.Resources)
	out.VIPs = nilIfEmpty(out.VIPs)
	out.Services = nilIfEmpty(out.Services)
	for i := range out.Services {
		svc := &out.Services[i]
		svc.RealServers.Servers = nilIfEmpty(svc.RealServers.Servers)
		if hc := svc.HealthCheck; hc != nil {
			hc.ExpectStatus = nilIfEmpty(hc.ExpectStatus)
			hc.Command = nilIfEmpty(hc.Command)
		}
	}
	return out
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// SameConfig reports whether a and b describe the same configuration,
// ignoring Version and the nil/empty distinction of slices.
func SameConfig(a, b Spec) bool {
	a, b = a.Normalized(), b.Normalized()
	a.Version, b.Version = 0, 0
	return reflect.DeepEqual(a, b)
}
