"""A stand-in for ``llama-server`` (stdlib only) to test process handling without llama.cpp.

Environment: FAKE_FLAGS=old (print the pre-2026 draft flag names in --help), =spec (a 2026
build: ``--spec-type`` with ``ngram-simple`` and its ``--spec-ngram-simple-size-n/-m`` flags;
an unknown flag or a draft model with ``--spec-type ngram-simple`` exits 1), FAKE_CRASH=1
(exit 3 at start; =silent: without output), FAKE_SLOW=seconds (sleep in /completion),
FAKE_PIDDIR (write PID there).
/completion returns n_predict tokens counting up from the last prompt id; with a draft model
(or ``--spec-type ngram-simple``: gamma = ``--spec-ngram-simple-size-m``, the request's
``speculative.n_max`` ignored as llama.cpp does) it reports gamma-token drafts whose first
(gamma - 1) tokens are accepted, in the response's ``timings`` and in the Prometheus counters
of /metrics.
"""

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

NEW = (
    "--spec-draft-model, -md FNAME\n--spec-draft-n-max N\n--spec-draft-n-min N\n"
    "--spec-draft-p-min P\n"
)
OLD = (
    "-md, --model-draft FNAME\n--draft-max, --draft, --draft-n N\n"
    "--draft-min, --draft-n-min N\n--draft-p-min P\n"
)

SPEC = NEW + (
    "--spec-type none,draft-simple,draft-eagle3,ngram-simple,ngram-map-k,ngram-mod\n"
    "--spec-ngram-simple-size-n N\n--spec-ngram-simple-size-m N\n"
    "--spec-ngram-simple-min-hits N\n--spec-ngram-size-n N  the argument has been removed\n"
)
HELP = {"old": OLD, "spec": SPEC}.get(os.environ.get("FAKE_FLAGS", ""), NEW)
VALUED = {"-m", "--port", "--host", "-c", "-np", "-ngl", "-t"}  # flags with a value


def arg(name, default=None):
    a = sys.argv
    return a[a.index(name) + 1] if name in a else default


if "--help" in sys.argv:
    print("usage: llama-server [options]\n-m, --model FNAME\n--port PORT\n--no-webui\n" + HELP)
    sys.exit(0)
if "--version" in sys.argv:
    print("version: 4242 (fakefake)\nbuilt with fake")
    sys.exit(0)
if os.environ.get("FAKE_CRASH"):
    if os.environ["FAKE_CRASH"] != "silent":
        print("error: cannot load model", file=sys.stderr)
    sys.exit(3)
if os.environ.get("FAKE_PIDDIR"):
    with open(os.path.join(os.environ["FAKE_PIDDIR"], f"{os.getpid()}.pid"), "w") as f:
        f.write(" ".join(sys.argv))

if os.environ.get("FAKE_FLAGS") == "spec":  # refuse what this build would not take
    known = VALUED | {"--metrics", "--no-webui"} | {w.strip(",") for w in SPEC.split()
                                                    if w.startswith("-")}
    bad = [a for a in sys.argv[1:] if a.startswith("-") and a not in known]
    if bad or arg("--spec-type", "draft-simple") not in ("draft-simple", "ngram-simple"):
        print(f"error: invalid argument: {bad}", file=sys.stderr)
        sys.exit(1)
ngram = arg("--spec-type") == "ngram-simple"
draft = arg("--spec-draft-model") or arg("--model-draft") or arg("-md")
if ngram and draft:
    print("error: the fake runs one speculative type", file=sys.stderr)
    sys.exit(1)
gamma = int(arg("--spec-ngram-simple-size-m") if ngram
            else arg("--spec-draft-n-max") or arg("--draft-max") or 5)
state = {"drafts": 0, "drafted": 0, "accepted": 0, "pos": [0] * gamma}
state["ready_at"] = time.time() + 0.3


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _send(self, code, body, ctype="application/json"):
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        if self.path == "/health":
            ok = time.time() > state["ready_at"]
            return self._send(200 if ok else 503, {"status": "ok" if ok else "loading"})
        if self.path == "/metrics":
            lines = ["llamacpp:tokens_predicted_total 0"]
            if draft or ngram:
                lines += [
                    f"llamacpp:spec_decode_num_draft_tokens_total {state['drafted']}",
                    f"llamacpp:spec_decode_num_accepted_tokens_total {state['accepted']}",
                    f"llamacpp:spec_decode_num_drafts_total {state['drafts']}",
                ] + [
                    f'llamacpp:spec_decode_num_accepted_tokens_per_pos_total{{position="{i}"}} {v}'
                    for i, v in enumerate(state["pos"])
                ]
            return self._send(200, "\n".join(lines) + "\n", "text/plain")
        self._send(404, {"error": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if os.environ.get("FAKE_SLOW"):
            time.sleep(float(os.environ["FAKE_SLOW"]))
        n = int(body["n_predict"])
        last = body["prompt"][-1]
        toks = [(last + 1 + i) % 250 for i in range(n)]
        timings = {"prompt_n": len(body["prompt"]), "prompt_ms": 2.0, "predicted_n": n,
                   "predicted_ms": 10.0 * n}
        if (draft or ngram) and n > 1:
            g = gamma if ngram else int(body.get("speculative.n_max", gamma))
            steps = (n - 1) // g  # each step: g drafted, g - 1 accepted + 1 correction
            timings.update({"draft_n": steps * g, "draft_n_accepted": steps * (g - 1)})
            state["drafts"] += steps
            state["drafted"] += steps * g
            state["accepted"] += steps * (g - 1)
            for i in range(g - 1):
                state["pos"][i] += steps
        self._send(200, {"content": "x" * n, "tokens": toks, "stop_type": "limit",
                         "tokens_predicted": n, "timings": timings})


HTTPServer(("127.0.0.1", int(arg("--port"))), H).serve_forever()
