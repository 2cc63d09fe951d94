# Parse esptool command lines with the real esptool's own click parser,
# without running any command (no port is opened, no chip is touched).
# stdin: a JSON list of argv lists (no executable). stdout: a JSON list of
# {"argv", "ok", "command", "params", "error", "log"} in the same order.
import contextlib
import io
import json
import sys

import click
import esptool

cli = esptool.cli
results = []
for argv in json.load(sys.stdin):
    r = {"argv": argv, "ok": False, "command": "", "params": {}, "error": "", "log": ""}
    buf = io.StringIO()
    ctxs = []
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            cli._esp = None  # what EsptoolGroup.__call__ would set
            # @file arguments are expanded by esptool.main before click sees them.
            args = esptool.expand_file_arguments(list(argv))
            ctx = cli.make_context("esptool", args)
            ctxs.append(ctx)
            prot = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args
            rest = [*prot, *ctx.args]
            name, cmd, rest = cli.resolve_command(ctx, rest)
            sub = cmd.make_context(name, rest, parent=ctx)
            ctxs.append(sub)
        params = {}
        for k, v in {**ctx.params, **sub.params}.items():
            if k == "addr_filename":
                v = [[a, f.name] for a, f in v]
            elif not isinstance(v, (str, int, bool, type(None))):
                v = repr(v)
            params[k] = v
        r.update(ok=True, command=name, params=params)
    except click.exceptions.ClickException as e:
        r["error"] = f"{type(e).__name__}: {e.format_message()}"
    except click.exceptions.Exit as e:  # --help, --version
        r["error"] = f"exit {e.exit_code}"
    finally:
        for c in ctxs:
            for f in getattr(c, "_open_files", []):
                f.close()
    r["log"] = buf.getvalue()
    results.append(r)
json.dump(results, sys.stdout)
