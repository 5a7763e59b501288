package cli

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/hub"
	"tether.dev/tether/internal/store"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "The hub's audit trail: every request, session, sign-in, enrollment and change",
	}
	cmd.AddCommand(newAuditListCmd(), newAuditVerifyCmd())
	return cmd
}

func newAuditListCmd() *cobra.Command {
	var (
		af                                          adminFlags
		out                                         outputFlag
		group, name, principal, verb, decision, typ string
		since, until                                string
		limit                                       int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List audit events, oldest first (-o json to export)",
		Long: `List audit events, oldest first. --since and --until take an RFC 3339 time
(2026-11-27T10:00:00Z) or a duration before now (1h, 30m). Without --limit
every matching event is listed, page by page.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if (group == "") != (name == "") {
				return usageError{errors.New("give both -g GROUP and -n NAME to select a cluster, or neither")}
			}
			if group != "" {
				q.Set("cluster", store.ClusterID(group, name))
			}
			now := time.Now()
			for _, t := range []struct{ flag, value, param string }{{"--since", since, "since"}, {"--until", until, "until"}} {
				if t.value == "" {
					continue
				}
				at, err := parseWhen(t.value, now)
				if err != nil {
					return usageError{fmt.Errorf("%s: %w", t.flag, err)}
				}
				q.Set(t.param, at.UTC().Format(time.RFC3339Nano))
			}
			for k, v := range map[string]string{"principal": principal, "verb": verb, "decision": decision, "type": typ} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if limit < 0 || limit > store.MaxAuditLimit {
				return usageError{fmt.Errorf("--limit %d: want 1 to %d, or 0 for every event", limit, store.MaxAuditLimit)}
			}
			events, err := fetchAudit(cmd, &af, &out, q, limit)
			if err != nil {
				return err
			}
			return out.print(cmd.OutOrStdout(), events, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "SEQ\tTIME\tTYPE\tPRINCIPAL\tCLUSTER\tVERB\tRESOURCE\tDECISION\tSTATUS\n")
				for _, e := range events {
					who := e.PrincipalName
					if who == "" {
						who = e.PrincipalID
					}
					res := e.Resource
					if e.Subresource != "" {
						res += "/" + e.Subresource
					}
					if e.Path != "" {
						res = e.Path
					}
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", e.Seq, e.Time.UTC().Format(time.RFC3339),
						e.Type, orDash(who), orDash(e.Cluster), orDash(e.Verb), orDash(res), e.Decision, e.Status)
				}
			})
		},
	}
	af.register(cmd)
	out.register(cmd.Flags())
	f := cmd.Flags()
	f.StringVarP(&group, "group", "g", "", "with -n: only events of that cluster")
	f.StringVarP(&name, "name", "n", "", "with -g: only events of that cluster")
	f.StringVar(&principal, "principal", "", "only events of this principal (object ID)")
	f.StringVar(&verb, "verb", "", "only this verb (get, list, watch, create, update, patch, delete, ...)")
	f.StringVar(&decision, "decision", "", "only this decision: allow, deny or error")
	f.StringVar(&typ, "type", "", "only this type: request, session.start, session.end, enroll, change")
	f.StringVar(&since, "since", "", "only events at or after this time (RFC 3339, or a duration before now such as 1h)")
	f.StringVar(&until, "until", "", "only events before this time (RFC 3339, or a duration before now)")
	f.IntVar(&limit, "limit", 0, "at most this many events (0: every matching event)")
	return cmd
}

// auditPage is how many events fetchAudit asks for at once: a page of
// store.MaxAuditLimit events can be larger than the client reads of one
// answer (maxAnswer).
const auditPage = 1000

// fetchAudit reads the events matching q, page by page, at most limit of
// them (0: all).
func fetchAudit(cmd *cobra.Command, af *adminFlags, out *outputFlag, q url.Values, limit int) ([]audit.Event, error) {
	var all []audit.Event
	for {
		page := auditPage
		if limit > 0 {
			page = min(page, limit-len(all))
		}
		q.Set("limit", strconv.Itoa(page))
		var p hub.AuditPage
		if err := adminCall(cmd, af, out, "GET", hub.AuditPath+"?"+q.Encode(), nil, &p); err != nil {
			return nil, err
		}
		all = append(all, p.Events...)
		if p.Next == 0 || (limit > 0 && len(all) >= limit) {
			return all, nil
		}
		q.Set("after", strconv.FormatInt(p.Next, 10))
	}
}

// parseWhen reads an RFC 3339 time, or a duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-27T10:00:00Z) nor a duration before now (1h)", s)
	}
	return now.Add(-d), nil
}

// AuditVerification is what `tether audit verify` reports.
type AuditVerification struct {
	// Events is how many events were checked.
	Events int `json:"events"`
	// HeadSeq and HeadHash name the newest event: record them, and a later
	// verify with --head can tell that nothing after them was cut off.
	HeadSeq  int64  `json:"headSeq"`
	HeadHash string `json:"headHash"`
	// Intact reports whether the chain is unbroken; Problem says where it
	// breaks.
	Intact  bool   `json:"intact"`
	Problem string `json:"problem,omitempty"`
}

func newAuditVerifyCmd() *cobra.Command {
	var (
		af   adminFlags
		out  outputFlag
		head string
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit trail's hash chain: an edited, inserted or deleted event is found",
		Long: `Read the whole audit trail and check its hash chain: every event carries the
hash of its content and of the event before it, so an edited, inserted,
reordered or deleted event breaks the chain from there on. It prints the
newest event's sequence number and hash; give them back later as
--head SEQ:HASH to check also that no event up to that one was removed from
the end. Exits 1 when the chain is broken.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var wantSeq int64
			var wantHash string
			if head != "" {
				s, h, ok := strings.Cut(head, ":")
				var err error
				if wantSeq, err = strconv.ParseInt(s, 10, 64); !ok || err != nil || wantSeq < 1 {
					return usageError{fmt.Errorf("--head %q: want SEQ:HASH as printed by an earlier verify", head)}
				}
				wantHash = strings.ToLower(h)
			}
			events, err := fetchAudit(cmd, &af, &out, url.Values{}, 0)
			if err != nil {
				return err
			}
			v := AuditVerification{Events: len(events), Intact: true}
			if n := len(events); n > 0 {
				v.HeadSeq, v.HeadHash = events[n-1].Seq, hex.EncodeToString(events[n-1].Hash)
				if events[0].Seq != 1 {
					v.Intact, v.Problem = false, fmt.Sprintf("the trail starts at event %d: events 1 to %d are missing", events[0].Seq, events[0].Seq-1)
				}
			}
			if err := audit.Verify(events, nil); v.Intact && err != nil {
				v.Intact, v.Problem = false, err.Error()
			}
			if v.Intact && wantSeq > 0 {
				switch {
				case wantSeq > v.HeadSeq:
					v.Intact, v.Problem = false, fmt.Sprintf("the trail ends at event %d, before the recorded head %d: events were removed from the end", v.HeadSeq, wantSeq)
				case hex.EncodeToString(events[wantSeq-1].Hash) != wantHash:
					v.Intact, v.Problem = false, fmt.Sprintf("event %d's hash is not the recorded one: the trail was rewritten up to there", wantSeq)
				}
			}
			err = out.print(cmd.OutOrStdout(), v, func(w *tabwriter.Writer) {
				if v.Intact {
					fmt.Fprintf(w, "audit trail intact: %d events; head %d:%s\n", v.Events, v.HeadSeq, v.HeadHash)
				} else {
					fmt.Fprintf(w, "audit trail BROKEN: %s\n", v.Problem)
				}
			})
			if err == nil && !v.Intact {
				return errors.New("the audit trail's hash chain is broken: " + v.Problem)
			}
			return err
		},
	}
	af.register(cmd)
	out.register(cmd.Flags())
	cmd.Flags().StringVar(&head, "head", "", "SEQ:HASH printed by an earlier verify: also check that the trail still reaches it unchanged")
	return cmd
}
