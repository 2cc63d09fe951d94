package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hilrun/hilrun/fixtures"
	"github.com/hilrun/hilrun/reports"
	"github.com/hilrun/hilrun/rig/board"
	"github.com/hilrun/hilrun/rig/hub"
	"github.com/hilrun/hilrun/rig/iothub/twin"
)

type consoleOptions struct {
	board   string
	port    string
	baud    int
	defects []string
	prompt  string // auto, on, off
}

func newConsoleCmd() *cobra.Command {
	o := consoleOptions{}
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Interactive console of a board: live log with decoded agent frames, agent commands",
		Long: `console opens a board's serial line and shows everything on it, console text
and agent frames (secrets redacted), with timestamps. Type agent operations
to send them, e.g.

  hello
  status
  telemetry.send {"payload":"{\"t\":1}","props":{"a":"b"},"wait":true}
  method.define {"name":"reboot","status":200,"payload":"{}"}

With the virtual board (the default) an embedded reference hub runs too, a
device is registered and the board is configured for it; ':open' connects.
Hub-side commands start with a colon:

  :open / :close       client.open / client.close
  :c2d TEXT            send a cloud-to-device message
  :invoke NAME [JSON]  invoke a direct method (10 s timeout)
  :desired JSON        patch the desired properties
  :trace               the hub's wire trace of the device
  :frames on|off       show raw agent frames
  :reset               reset the board (EN pin)
  :help                every command with its argument syntax
  :quit                leave

The board's log is shown once, PEM blocks folded, secrets redacted; the
requests you type and their responses are not echoed as raw frames.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runConsole(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.board, "board", "sim", "sim (virtual board with embedded hub) or serial (--port)")
	f.StringVar(&o.port, "port", "", "serial port of a real board")
	f.IntVar(&o.baud, "baud", 115200, "baud rate of a real board")
	f.StringArrayVar(&o.defects, "defect", nil, "virtual board: defect switch (repeatable)")
	f.StringVar(&o.prompt, "prompt", "auto", "show the hilrun> prompt: auto (when stdin is a terminal), on, off")
	return cmd
}

func runConsole(cmd *cobra.Command, o consoleOptions) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := cmd.OutOrStdout()
	view := &consoleView{w: out}
	opts := fixtures.Options{Log: cmd.ErrOrStderr(), ConsoleMirror: view, Defects: o.defects}
	switch o.board {
	case "sim":
	case "serial":
		if o.port == "" {
			return &exitError{2, "--board serial needs --port"}
		}
		opts.Board = board.NewSerial(board.SerialConfig{Port: o.port, Baud: o.baud})
	default:
		return &exitError{2, fmt.Sprintf("unknown board profile %q: use sim or serial", o.board)}
	}
	e, err := fixtures.Start(ctx, opts)
	if err != nil {
		return &exitError{2, err.Error()}
	}
	defer e.Close()
	var s *fixtures.Session
	if o.board == "sim" {
		if s, err = e.NewSession(ctx, fixtures.SessionOptions{Name: "console", NoOpen: true}); err != nil {
			return &exitError{2, err.Error()}
		}
		fmt.Fprintf(out, "# virtual board on %s, hub %s, device %s configured; type :open to connect, :help for help\n",
			e.Board.Info().Port, e.Net.Addr(), s.ID)
	} else {
		fmt.Fprintf(out, "# %s on %s; type agent operations (hello, status, …), :quit to leave\n", e.Board.Info().Name, e.Board.Info().Port)
	}
	showPrompt := o.prompt == "on" || o.prompt == "auto" && interactive(cmd.InOrStdin())
	prompt := func() {
		if showPrompt {
			view.mu.Lock()
			fmt.Fprint(out, "hilrun> ")
			view.mu.Unlock()
		}
	}
	prompt()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(cmd.InOrStdin())
		sc.Buffer(make([]byte, 64*1024), 64*1024)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case l, ok := <-lines:
			if !ok {
				return nil
			}
			l = strings.TrimSpace(l)
			if l == "" {
				prompt()
				continue
			}
			if l == ":quit" || l == ":q" {
				return nil
			}
			if f, ok := strings.CutPrefix(l, ":frames"); ok {
				view.setFrames(strings.TrimSpace(f) != "off")
				prompt()
				continue
			}
			if err := consoleCommand(ctx, out, e, s, l); err != nil {
				fmt.Fprintf(out, "# error: %v\n", err)
			}
			prompt()
		}
	}
}

func consoleCommand(ctx context.Context, out io.Writer, e *fixtures.Env, s *fixtures.Session, l string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	word, rest, _ := strings.Cut(l, " ")
	rest = strings.TrimSpace(rest)
	needHub := func() error {
		if s == nil {
			return fmt.Errorf("%s needs the embedded hub (virtual board)", word)
		}
		return nil
	}
	switch word {
	case ":help":
		fmt.Fprintln(out, consoleHelp)
		return nil
	case ":open":
		if err := needHub(); err != nil {
			return err
		}
		return s.Open(ctx)
	case ":close":
		return e.Agent.Call(ctx, "client.close", map[string]bool{"graceful": true}, nil)
	case ":reset":
		return e.Board.Reset(ctx)
	case ":c2d":
		if err := needHub(); err != nil {
			return err
		}
		id, err := e.Hub.SendC2D(s.ID.DeviceID, hub.C2DMessage{Payload: []byte(rest)})
		if err == nil {
			fmt.Fprintf(out, "# C2D queued, message id %s\n", id)
		}
		return err
	case ":invoke":
		if err := needHub(); err != nil {
			return err
		}
		name, payload, _ := strings.Cut(rest, " ")
		r, err := e.Hub.InvokeMethod(ctx, s.ID, hub.MethodRequest{Name: name, Payload: []byte(payload), Timeout: 10 * time.Second})
		if err == nil {
			fmt.Fprintf(out, "# method %s → status %d payload %s\n", name, r.Status, r.Payload)
		}
		return err
	case ":desired":
		if err := needHub(); err != nil {
			return err
		}
		var patch twin.Section
		if err := json.Unmarshal([]byte(rest), &patch); err != nil {
			return fmt.Errorf(":desired needs a JSON object: %v", err)
		}
		v, err := e.Hub.UpdateDesired(s.ID, patch)
		if err == nil {
			fmt.Fprintf(out, "# desired version %d\n", v)
		}
		return err
	case ":trace":
		if err := needHub(); err != nil {
			return err
		}
		fmt.Fprint(out, fixtures.FormatTrace(s.Trace(s.Start()), 60))
		return nil
	}
	if strings.HasPrefix(word, ":") {
		return fmt.Errorf("unknown command %s (:help)", word)
	}
	var args any
	if rest != "" {
		var raw json.RawMessage
		if err := json.Unmarshal([]byte(rest), &raw); err != nil {
			return fmt.Errorf("arguments must be JSON: %v", err)
		}
		args = raw
	}
	var res json.RawMessage
	if err := e.Agent.Call(ctx, word, args, &res); err != nil {
		return err
	}
	if len(res) > 0 {
		fmt.Fprintf(out, "# %s → %s\n", word, shorten(reports.FoldPEM(string(res))))
	} else {
		fmt.Fprintf(out, "# %s → ok\n", word)
	}
	return nil
}
