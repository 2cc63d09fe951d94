package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// stateFile is the file in Config.StateDir holding the registry and twins.
const stateFile = "hub-state.json"

type persistedState struct {
	Version  int                   `json:"version"`
	Registry registryState         `json:"registry"`
	Twins    map[string]*twinState `json:"twins"`
}

func (h *Hub) loadState() error {
	if err := os.MkdirAll(h.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(h.cfg.StateDir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read hub state: %w", err)
	}
	var st persistedState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("hub state %s is corrupt (%v); move it away to start empty", filepath.Join(h.cfg.StateDir, stateFile), err)
	}
	if err := h.reg.restore(st.Registry); err != nil {
		return err
	}
	for k, t := range st.Twins {
		h.twins[k] = t
	}
	return nil
}

// saveState writes the registry and twins atomically (temp file + rename).
// The file holds device keys, so it is private to the user.
func (h *Hub) saveState() error {
	h.saveMu.Lock()
	defer h.saveMu.Unlock()
	st := persistedState{Version: 1, Registry: h.reg.snapshot(), Twins: map[string]*twinState{}}
	h.mu.Lock()
	for k, t := range h.twins {
		cp := *t
		st.Twins[k] = &cp
	}
	b, err := json.MarshalIndent(st, "", "  ")
	h.mu.Unlock()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(h.cfg.StateDir, ".hub-state-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(h.cfg.StateDir, stateFile))
}

func (h *Hub) scheduleSave() {
	if h.cfg.StateDir == "" {
		return
	}
	select {
	case h.saveCh <- struct{}{}:
	default:
	}
}

// saveLoop coalesces saves: at most one write per 200 ms.
func (h *Hub) saveLoop() {
	defer h.wg.Done()
	for {
		select {
		case <-h.closed:
			return
		case <-h.saveCh:
			if err := h.saveState(); err != nil {
				h.log.Error("saving hub state failed", "err", err)
			}
			select {
			case <-h.closed:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}
