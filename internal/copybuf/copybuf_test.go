package copybuf

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"testing"
)

var _ httputil.BufferPool = Large

func TestPool(t *testing.T) {
	for _, p := range []*Pool{Large, Small} {
		b := p.Get()
		if len(b) != p.size {
			t.Fatalf("Get: %d bytes, want %d", len(b), p.size)
		}
		p.Put(b[:10]) // a shortened buffer comes back whole
		if got := p.Get(); len(got) != p.size {
			t.Errorf("Get after Put of a shortened buffer: %d bytes, want %d", len(got), p.size)
		}
		p.Put(make([]byte, 100)) // not ours: dropped
		for range 10 {
			if got := p.Get(); len(got) != p.size {
				t.Fatalf("Get: %d bytes, want %d", len(got), p.size)
			}
		}
	}
}

func TestStreaming(t *testing.T) {
	for target, want := range map[string]bool{
		"/api/v1/namespaces/default/pods?watch=true":                           true,
		"/api/v1/pods?watch=1&resourceVersion=10":                              true,
		"/apis/apps/v1/namespaces/default/deployments?watch=true":              true,
		"/api/v1/namespaces/default/pods/web/log?follow=true&container=c":      true,
		"/api/v1/watch/namespaces/default/pods":                                true,
		"/apis/apps/v1/watch/deployments":                                      true,
		"/api/v1/namespaces/default/pods":                                      false,
		"/api/v1/namespaces/default/pods?watch=false":                          false,
		"/api/v1/namespaces/default/pods/web/log":                              false,
		"/api/v1/namespaces/default/configmaps/watch":                          false,
		"/apis/apps/v1/namespaces/default/deployments/web?fieldSelector=watch": false,
	} {
		if got := Streaming(httptest.NewRequest(http.MethodGet, target, nil)); got != want {
			t.Errorf("Streaming(%s) = %v, want %v", target, got, want)
		}
	}
}
