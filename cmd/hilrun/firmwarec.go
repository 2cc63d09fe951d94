package main

// --firmware c: the C firmware (devicefw/esp32) built for the host and run
// as the virtual board's image.
//
// The sources are not embedded in hilrun: they are found in the hilrun
// repository, by walking up from the working directory to the directory
// holding go.mod of this module and devicefw/esp32/host (then, failing
// that, next to the source file this binary was built from), or taken from
// $HILRUN_FW_C_SRC (a repository root). The build lands in
// <user cache dir>/hilrun/fw-c-<hash> ($XDG_CACHE_HOME/hilrun/... on Linux),
// the hash being over the sources (devicefw/esp32, certs/public) and the
// build settings, so an edit to the sources means a new build and an
// unchanged tree reuses the last one.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

const (
	fwCSrcEnv     = "HILRUN_FW_C_SRC"     // repository root holding devicefw/esp32
	fwCIncludeEnv = "HILRUN_FW_C_INCLUDE" // header search path (list), default the system's
	fwCModule     = "module github.com/hilrun/hilrun"
	fwCHostDir    = "devicefw/esp32/host"
	fwCBuildFlags = "-DCMAKE_C_COMPILER=clang -DHIL_SANITIZE=ON" // part of the hash
)

// fwCHeaders are the headers the host build needs and the Debian package of
// each, in the order the message lists them.
var fwCHeaders = []struct{ header, pkg string }{
	{"MQTTClient.h", "libpaho-mqtt-dev"},
	{"cjson/cJSON.h", "libcjson-dev"},
	{"mbedtls/md.h", "libmbedtls-dev"},
	{"mbedtls/x509_crt.h", "libmbedtls-dev"},
	{"openssl/ssl.h", "libssl-dev"},
}

// firmwareHook resolves --firmware: go (default) leaves the options alone;
// c builds the C firmware when needed and makes it the image.
func firmwareHook(ctx context.Context, o *runOptions, log io.Writer) error {
	switch o.firmware {
	case "", "go":
		return nil
	case "c":
	default:
		return &exitError{2, fmt.Sprintf("unknown --firmware %q: use go (the built-in reference firmware) or c (devicefw/esp32 built for the host)", o.firmware)}
	}
	if o.board != "sim" {
		return &exitError{2, "--firmware c runs on the virtual board (--board sim); flash a board with --image"}
	}
	if o.image != "" {
		return &exitError{2, "--firmware c builds its own image; leave out --image (or drop --firmware to run that executable)"}
	}
	img, err := buildCFirmware(ctx, log)
	if err != nil {
		return err
	}
	o.image = img
	return nil
}

// fwCSource finds the repository root holding the C firmware's sources.
func fwCSource() (string, error) {
	if d := os.Getenv(fwCSrcEnv); d != "" {
		if !isFile(filepath.Join(d, fwCHostDir, "CMakeLists.txt")) {
			return "", fmt.Errorf("$%s=%s holds no %s/CMakeLists.txt", fwCSrcEnv, d, fwCHostDir)
		}
		return d, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, s := range starts {
		for d := s; ; d = filepath.Dir(d) {
			if isRepoRoot(d) {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", fmt.Errorf("the C firmware's sources (%s) were not found above the working directory: run hilrun from the hilrun repository or set $%s to its root", fwCHostDir, fwCSrcEnv)
}

func isRepoRoot(d string) bool {
	b, err := os.ReadFile(filepath.Join(d, "go.mod"))
	if err != nil || !strings.Contains(string(b), fwCModule+"\n") {
		return false
	}
	return isFile(filepath.Join(d, fwCHostDir, "CMakeLists.txt"))
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// fwCMissing lists the Debian packages the host build lacks: cmake and
// clang on $PATH, the headers in the include path.
func fwCMissing() []string {
	var pkgs []string
	add := func(p string) {
		for _, q := range pkgs {
			if q == p {
				return
			}
		}
		pkgs = append(pkgs, p)
	}
	for _, tool := range []string{"cmake", "clang"} {
		if _, err := exec.LookPath(tool); err != nil {
			add(tool)
		}
	}
	dirs := filepath.SplitList(os.Getenv(fwCIncludeEnv))
	if len(dirs) == 0 {
		dirs = []string{"/usr/include", "/usr/local/include", "/usr/include/" + debianMultiarch(), "/usr/include/paho-mqtt"}
	}
	for _, h := range fwCHeaders {
		found := false
		for _, d := range dirs {
			if d != "" && isFile(filepath.Join(d, h.header)) {
				found = true
				break
			}
		}
		if !found {
			add(h.pkg)
		}
	}
	return pkgs
}

func debianMultiarch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64-linux-gnu"
	case "arm64":
		return "aarch64-linux-gnu"
	case "arm":
		return "arm-linux-gnueabihf"
	case "386":
		return "i386-linux-gnu"
	}
	return runtime.GOARCH + "-linux-gnu"
}

// fwCHash is the hash of the sources the host firmware is built from and
// of the build settings.
func fwCHash(root string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "flags %s\n", fwCBuildFlags)
	for _, top := range []string{"devicefw/esp32", "certs/public"} {
		var files []string
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && p != filepath.Join(root, top) && (d.Name() == "build" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			if d.Type().IsRegular() && !strings.HasSuffix(p, ".md") { // docs do not change the build
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		sort.Strings(files)
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				return "", err
			}
			rel, _ := filepath.Rel(root, p)
			fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(rel), len(b))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// buildCFirmware returns the host C firmware's executable, building it
// into the cache when the sources changed since the last build.
func buildCFirmware(ctx context.Context, log io.Writer) (string, error) {
	root, err := fwCSource()
	if err != nil {
		return "", &exitError{2, err.Error()}
	}
	if pkgs := fwCMissing(); len(pkgs) > 0 {
		return "", &exitError{2, fmt.Sprintf("--firmware c: the host build needs Debian packages that are missing: %s (apt-get install -y %s)",
			strings.Join(pkgs, " "), strings.Join(pkgs, " "))}
	}
	sum, err := fwCHash(root)
	if err != nil {
		return "", &exitError{2, "--firmware c: hashing the sources: " + err.Error()}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", &exitError{2, "--firmware c: no cache directory: " + err.Error()}
	}
	dir := filepath.Join(cache, "hilrun", "fw-c-"+sum)
	exe := filepath.Join(dir, "hilfw")
	if isFile(exe) {
		fmt.Fprintf(log, "hilrun: C firmware %s (cached)\n", exe)
		return exe, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", &exitError{2, "--firmware c: " + err.Error()}
	}
	// Build in a directory of our own, then move it into place: two runs
	// building at once both end with a complete build.
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "fw-c-"+sum+".tmp-")
	if err != nil {
		return "", &exitError{2, "--firmware c: " + err.Error()}
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(log, "hilrun: building the C firmware (%s) into %s\n", filepath.Join(root, fwCHostDir), dir)
	steps := [][]string{
		append([]string{"cmake", "-S", filepath.Join(root, fwCHostDir), "-B", tmp}, strings.Fields(fwCBuildFlags)...),
		{"cmake", "--build", tmp, "--target", "hilfw", "-j2"},
	}
	for _, s := range steps {
		c := exec.CommandContext(ctx, s[0], s[1:]...)
		out, err := c.CombinedOutput()
		if err != nil {
			return "", &exitError{2, fmt.Sprintf("--firmware c: %s failed (%v):\n%s", strings.Join(s, " "), err, tail(string(out), 40))}
		}
	}
	if !isFile(filepath.Join(tmp, "hilfw")) {
		return "", &exitError{2, "--firmware c: the build made no hilfw"}
	}
	if err := os.Rename(tmp, dir); err != nil && !isFile(exe) {
		return "", &exitError{2, "--firmware c: " + err.Error()}
	}
	if !isFile(exe) {
		return "", &exitError{2, "--firmware c: the build vanished from " + dir}
	}
	return exe, nil
}
