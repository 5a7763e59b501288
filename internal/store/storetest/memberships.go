package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/store"
)

func testAddMember(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Display names sort like the IDs.
	var (
		alice = mustCreatePrincipal(ctx, t, s, newUser(1, "a alice", "alice@example.com")).ID
		bot   = mustCreatePrincipal(ctx, t, s, newSP(2, "b bot")).ID
		g1    = mustCreatePrincipal(ctx, t, s, newGroup(3, "c g1")).ID
		g2    = mustCreatePrincipal(ctx, t, s, newGroup(4, "d g2")).ID
		g3    = mustCreatePrincipal(ctx, t, s, newGroup(5, "e g3")).ID
	)

	// Applied in order.
	tests := []struct {
		name    string
		group   string
		member  string
		wantErr error
	}{
		{"user", g1, alice, nil},
		{"service principal", g1, bot, nil},
		{"group in a group", g2, g1, nil},
		{"same user again", g1, alice, store.ErrConflict},
		{"same group again", g2, g1, store.ErrConflict},
		{"user also directly in the outer group", g2, alice, nil},
		{"group in itself", g1, g1, store.ErrCycle},
		{"outer group in the inner", g1, g2, store.ErrCycle},
		{"third level", g3, g2, nil},
		{"outermost group in the innermost", g1, g3, store.ErrCycle},
		{"outermost group in the middle", g2, g3, store.ErrCycle},
		{"innermost group also directly in the outermost", g3, g1, nil},
		{"into a user", alice, g1, store.ErrInvalid},
		{"into a service principal", bot, alice, store.ErrInvalid},
		{"into an unknown group", pid(99), alice, store.ErrNotFound},
		{"unknown member", g1, pid(99), store.ErrNotFound},
		{"malformed group ID", "g1", alice, store.ErrInvalid},
		{"malformed member ID", g1, "alice@example.com", store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.AddMember(t.Context(), tt.group, tt.member); !errors.Is(err, tt.wantErr) {
				t.Errorf("AddMember = %v, want %v", err, tt.wantErr)
			}
		})
	}
	want := map[string][]string{
		g1: {alice, bot},
		g2: {alice, g1},
		g3: {g1, g2},
	}
	if diff := cmp.Diff(want, readDirectory(t, s).Members, opts); diff != "" {
		t.Errorf("members afterwards (-want +got):\n%s", diff)
	}
}

// testAddMemberConcurrentCycle races the additions that close a ring of
// groups, g0 in g1 in ... in g(n-1) in g0: any n-1 of them make a chain,
// all n a cycle, so exactly one must fail.
func testAddMemberConcurrentCycle(t *testing.T, s store.Store) {
	const n = 12
	ctx := t.Context()
	groups := make([]string, n)
	for i := range n {
		groups[i] = mustCreatePrincipal(ctx, t, s, newGroup(i+1, fmt.Sprintf("g%02d", i))).ID
	}
	errs := race(n, func(i int) error { return s.AddMember(ctx, groups[(i+1)%n], groups[i]) })

	var failed []int
	for i, err := range errs {
		switch {
		case errors.Is(err, store.ErrCycle):
			failed = append(failed, i)
		case err != nil:
			t.Errorf("addition %d: %v, want nil or %v", i, err, store.ErrCycle)
		}
	}
	if len(failed) != 1 {
		t.Fatalf("%d additions failed (%v), want exactly 1", len(failed), failed)
	}
	// No group is in itself, and the chain from the group after the one
	// that failed reaches every other group.
	for _, g := range groups {
		got, err := s.GroupsOf(ctx, g)
		if err != nil {
			t.Fatalf("GroupsOf: %v", err)
		}
		if slices.Contains(got, g) {
			t.Errorf("group %s is in itself: GroupsOf = %v", g, got)
		}
	}
	first := groups[(failed[0]+1)%n]
	got, err := s.GroupsOf(ctx, first)
	if err != nil {
		t.Fatalf("GroupsOf: %v", err)
	}
	want := slices.DeleteFunc(slices.Clone(groups), func(g string) bool { return g == first })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GroupsOf(start of the chain) (-want +got):\n%s", diff)
	}
}

func testRemoveMember(t *testing.T, s store.Store) {
	ctx := t.Context()
	var (
		alice = mustCreatePrincipal(ctx, t, s, newUser(1, "a alice", "alice@example.com")).ID
		inner = mustCreatePrincipal(ctx, t, s, newGroup(2, "b inner")).ID
		outer = mustCreatePrincipal(ctx, t, s, newGroup(3, "c outer")).ID
		other = mustCreatePrincipal(ctx, t, s, newGroup(4, "d other")).ID
	)
	mustAddMember(ctx, t, s, inner, alice)
	mustAddMember(ctx, t, s, outer, inner)
	mustAddMember(ctx, t, s, other, alice)

	// Applied in order.
	tests := []struct {
		name       string
		group      string
		member     string
		wantErr    error
		wantGroups []string // GroupsOf(alice) afterwards
	}{
		{"not a member", outer, alice, store.ErrNotFound, []string{inner, outer, other}},
		{"nesting", outer, inner, nil, []string{inner, other}},
		{"nesting again", outer, inner, store.ErrNotFound, []string{inner, other}},
		{"unknown group", pid(99), alice, store.ErrNotFound, []string{inner, other}},
		{"unknown member", inner, pid(99), store.ErrNotFound, []string{inner, other}},
		{"malformed group ID", "inner", alice, store.ErrInvalid, []string{inner, other}},
		{"malformed member ID", inner, "alice", store.ErrInvalid, []string{inner, other}},
		{"user", inner, alice, nil, []string{other}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.RemoveMember(t.Context(), tt.group, tt.member); !errors.Is(err, tt.wantErr) {
				t.Errorf("RemoveMember = %v, want %v", err, tt.wantErr)
			}
			got, err := s.GroupsOf(t.Context(), alice)
			if err != nil {
				t.Fatalf("GroupsOf: %v", err)
			}
			if diff := cmp.Diff(tt.wantGroups, got, opts); diff != "" {
				t.Errorf("GroupsOf afterwards (-want +got):\n%s", diff)
			}
		})
	}
	// A removed membership can be made again.
	mustAddMember(ctx, t, s, outer, inner)
}

func testListMembers(t *testing.T, s store.Store) {
	ctx := t.Context()
	var (
		zed   = mustCreatePrincipal(ctx, t, s, withPassword(newUser(1, "Zed", "zed@example.com"), "hash"))
		bot   = mustCreatePrincipal(ctx, t, s, newSP(2, "bot"))
		alice = mustCreatePrincipal(ctx, t, s, withPassword(newUser(3, "alice", "alice@example.com"), "hash"))
		admin = mustCreatePrincipal(ctx, t, s, newGroup(4, "Admins"))
		devs  = mustCreatePrincipal(ctx, t, s, newGroup(5, "devs"))
		empty = mustCreatePrincipal(ctx, t, s, newGroup(6, "empty"))
		alic2 = mustCreatePrincipal(ctx, t, s, newUser(0, "alice", "alice2@example.com"))
	)
	for _, m := range []store.Principal{zed, bot, alice, admin, alic2} {
		mustAddMember(ctx, t, s, devs.ID, m.ID)
	}
	mustAddMember(ctx, t, s, admin.ID, alice.ID)
	tests := []struct {
		name    string
		group   string
		want    []store.Principal
		wantErr error
	}{
		{name: "direct members by display name and ID, without passwords", group: devs.ID, want: []store.Principal{admin, zed, alic2, alice, bot}},
		{name: "nested group's own members only", group: admin.ID, want: []store.Principal{alice}},
		{name: "no members", group: empty.ID, want: nil},
		{name: "user", group: alice.ID, wantErr: store.ErrInvalid},
		{name: "service principal", group: bot.ID, wantErr: store.ErrInvalid},
		{name: "unknown", group: pid(99), wantErr: store.ErrNotFound},
		{name: "malformed", group: "devs", wantErr: store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListMembers(t.Context(), tt.group)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ListMembers = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("ListMembers mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func testGroupsOf(t *testing.T, s store.Store) {
	ctx := t.Context()
	// IDs do not sort like the nesting: the result is sorted by ID.
	var (
		alice = mustCreatePrincipal(ctx, t, s, newUser(1, "Alice", "alice@example.com")).ID
		bob   = mustCreatePrincipal(ctx, t, s, newUser(2, "Bob", "bob@example.com")).ID
		bot   = mustCreatePrincipal(ctx, t, s, newSP(3, "bot")).ID
		loner = mustCreatePrincipal(ctx, t, s, newUser(4, "Loner", "loner@example.com")).ID
		c     = mustCreatePrincipal(ctx, t, s, newGroup(10, "C")).ID
		b     = mustCreatePrincipal(ctx, t, s, newGroup(11, "B")).ID
		left  = mustCreatePrincipal(ctx, t, s, newGroup(12, "left")).ID
		right = mustCreatePrincipal(ctx, t, s, newGroup(13, "right")).ID
		top   = mustCreatePrincipal(ctx, t, s, newGroup(14, "top")).ID
		a     = mustCreatePrincipal(ctx, t, s, newGroup(15, "A")).ID
	)
	// alice in A in B in C; bob in left and right, both in top (a diamond),
	// and directly in top; bot in A and top.
	mustAddMember(ctx, t, s, a, alice)
	mustAddMember(ctx, t, s, b, a)
	mustAddMember(ctx, t, s, c, b)
	mustAddMember(ctx, t, s, left, bob)
	mustAddMember(ctx, t, s, right, bob)
	mustAddMember(ctx, t, s, top, left)
	mustAddMember(ctx, t, s, top, right)
	mustAddMember(ctx, t, s, top, bob)
	mustAddMember(ctx, t, s, a, bot)
	mustAddMember(ctx, t, s, top, bot)

	tests := []struct {
		name    string
		id      string
		want    []string
		wantErr error
	}{
		{name: "user in nested groups", id: alice, want: []string{c, b, a}},
		{name: "group A in B in C", id: a, want: []string{c, b}},
		{name: "group in one group", id: b, want: []string{c}},
		{name: "outermost group", id: c, want: nil},
		{name: "diamond, each group once", id: bob, want: []string{left, right, top}},
		{name: "service principal in two trees", id: bot, want: []string{c, b, top, a}},
		{name: "in no group", id: loner, want: nil},
		{name: "not in the directory", id: pid(99), want: nil},
		{name: "malformed", id: "alice", wantErr: store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.GroupsOf(t.Context(), tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("GroupsOf = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("GroupsOf mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// testGroupsOfMany checks GroupsOf for a principal in 500 groups, directly,
// and for one in as many through a chain 500 deep.
func testGroupsOfMany(t *testing.T, s store.Store) {
	const n = 500
	ctx := t.Context()
	wide := mustCreatePrincipal(ctx, t, s, newUser(1, "wide", "wide@example.com")).ID
	deep := mustCreatePrincipal(ctx, t, s, newUser(2, "deep", "deep@example.com")).ID
	groups := make([]string, n)
	for i := range n {
		// IDs in the reverse of the chain's order.
		groups[i] = mustCreatePrincipal(ctx, t, s, newGroup(1000+n-i, fmt.Sprintf("g%03d", i))).ID
		mustAddMember(ctx, t, s, groups[i], wide)
		if i > 0 {
			mustAddMember(ctx, t, s, groups[i], groups[i-1])
		}
	}
	mustAddMember(ctx, t, s, groups[0], deep)
	want := slices.Sorted(slices.Values(groups))

	tests := []struct {
		name string
		id   string
		want []string
	}{
		{"direct member of every group, each also reached through the chain", wide, want},
		{"at the bottom of the chain", deep, want},
		{"group at the middle of the chain", groups[n/2], want[:n/2-1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.GroupsOf(t.Context(), tt.id)
			if err != nil {
				t.Fatalf("GroupsOf: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("GroupsOf mismatch (-want +got):\n%s", diff)
			}
		})
	}
	// The chain's last group closing the ring is refused, however deep.
	if err := s.AddMember(ctx, groups[0], groups[n-1]); !errors.Is(err, store.ErrCycle) {
		t.Errorf("AddMember(closing a %d-deep ring) = %v, want %v", n, err, store.ErrCycle)
	}
}
