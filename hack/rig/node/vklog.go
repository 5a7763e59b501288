package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/virtual-kubelet/virtual-kubelet/log"
)

// slogAdapter is virtual-kubelet's logger interface over slog. (The adapter
// virtual-kubelet ships panics on non-string arguments, which its own pod
// controller passes.) Fatal logs at error level and does not exit.
type slogAdapter struct{ l *slog.Logger }

func vkLogger(l *slog.Logger) log.Logger { return slogAdapter{l} }

func (a slogAdapter) emit(level slog.Level, msg string) {
	a.l.Log(context.Background(), level, msg)
}

func (a slogAdapter) Debug(args ...any)            { a.emit(slog.LevelDebug, fmt.Sprint(args...)) }
func (a slogAdapter) Debugf(f string, args ...any) { a.emit(slog.LevelDebug, fmt.Sprintf(f, args...)) }
func (a slogAdapter) Info(args ...any)             { a.emit(slog.LevelInfo, fmt.Sprint(args...)) }
func (a slogAdapter) Infof(f string, args ...any)  { a.emit(slog.LevelInfo, fmt.Sprintf(f, args...)) }
func (a slogAdapter) Warn(args ...any)             { a.emit(slog.LevelWarn, fmt.Sprint(args...)) }
func (a slogAdapter) Warnf(f string, args ...any)  { a.emit(slog.LevelWarn, fmt.Sprintf(f, args...)) }
func (a slogAdapter) Error(args ...any)            { a.emit(slog.LevelError, fmt.Sprint(args...)) }
func (a slogAdapter) Errorf(f string, args ...any) { a.emit(slog.LevelError, fmt.Sprintf(f, args...)) }
func (a slogAdapter) Fatal(args ...any)            { a.emit(slog.LevelError, fmt.Sprint(args...)) }
func (a slogAdapter) Fatalf(f string, args ...any) { a.emit(slog.LevelError, fmt.Sprintf(f, args...)) }

func (a slogAdapter) WithField(k string, v any) log.Logger { return slogAdapter{a.l.With(k, plain(v))} }

func (a slogAdapter) WithFields(fields log.Fields) log.Logger {
	args := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		args = append(args, k, plain(v))
	}
	return slogAdapter{a.l.With(args...)}
}

// WithError logs the error's message only: virtual-kubelet's errors carry
// stack traces that %+v would print.
func (a slogAdapter) WithError(err error) log.Logger {
	if err == nil {
		return a
	}
	return slogAdapter{a.l.With("err", err.Error())}
}

// plain turns errors into their message, for the same reason as WithError.
func plain(v any) any {
	if err, ok := v.(error); ok {
		return err.Error()
	}
	return v
}
