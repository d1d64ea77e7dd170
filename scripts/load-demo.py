"""Load and bad actors against `pedf demo`, from outside (Python stdlib only); prints figures.

Usage: python3 scripts/load-demo.py [path/to/pedf]   (default target/debug/pedf)

Starts `pedf demo` on port 18080 (its files in a temporary folder), lets it warm up 20 s, then
for 60 s: 200 SSE stream clients from four loopback hosts, 1000 idle sockets from a fifth,
four threads asking for a year's carbon accounting and an 8000-year one (refused, 422), four
threads sending malformed requests (binary junk, a 20 kB path, a bad token, a 100 MB
Content-Length, a path escape, a bad date) and the live state read twice a second. Prints
the cycles run, the cycle's lag and work histograms over the load (from /metrics), the state
request's latency, and every outcome counted. Used for issue 21's figures.
"""
import http.client, json, os, re, resource, socket, subprocess, sys, tempfile, threading, time, random
_, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, _hard), _hard))
PORT = 18080
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEDF = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/debug/pedf")
proc = subprocess.Popen([PEDF, "demo", "--dir", tempfile.mkdtemp(prefix="pedf-load-"),
    "--listen", f"127.0.0.1:{PORT}", "--modbus-port", "25020", "--mqtt-port", "28830", "--for", "110"],
    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
token = None
lines = []
def reader():
    global token
    for l in proc.stdout:
        lines.append(l)
        m = re.search(r"(pedf_[A-Za-z0-9_\-]+)", l)
        if m and token is None and "token" in l.lower():
            token = m.group(1)
threading.Thread(target=reader, daemon=True).start()
t0 = time.time()
while token is None and time.time() - t0 < 120: time.sleep(0.2)
assert token, "".join(lines)
H = {"Authorization": f"Bearer {token}"}
def get(path, timeout=60, src="127.0.0.1"):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout, source_address=(src, 0))
    c.request("GET", path, headers=H); r = c.getresponse(); b = r.read(); c.close(); return r.status, b
def metrics():
    _, b = get("/metrics"); return b.decode()
def hist(text, name):
    buckets = {}
    for l in text.splitlines():
        m = re.match(name + r'_bucket\{le="([^"]+)"\} (\S+)', l)
        if m: buckets[m.group(1)] = float(m.group(2))
    return buckets
def cycles(text):
    return int(float(re.search(r"^pedf_cycles_total (\S+)", text, re.M).group(1)))
time.sleep(20)
m0 = metrics(); c0 = cycles(m0)
stop = time.time() + 60
stats = {}
lock = threading.Lock()
def count(k):
    with lock: stats[k] = stats.get(k, 0) + 1
def sse(i):
    try:
        s = socket.create_connection(("127.0.0.1", PORT), timeout=10, source_address=(f"127.0.1.{i % 4 + 1}", 0))
        s.sendall(f"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        n = 0
        while time.time() < stop:
            d = s.recv(65536)
            if not d: count("sse closed"); break
            n += d.count(b"\ndata:") + d.startswith(b"data:")
        count("sse ok" if n > 0 else "sse no data")
    except Exception as e: count("sse " + type(e).__name__)
def heavy():
    while time.time() < stop:
        try:
            st, _ = get("/api/v1/carbon?from=2025-06-21&to=2026-06-21", timeout=120, src="127.0.2.1"); count(f"carbon 1y {st}")
            st, _ = get("/api/v1/carbon?from=2021-01-01&to=9999-12-31", src="127.0.2.1"); count(f"carbon 8000y {st}")
        except Exception as e: count("carbon " + type(e).__name__)
def bad():
    junk = [b"\x00\xff" * 100, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
            b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n",
            b"POST /api/v1/mode HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n{",
            b"GET /api/v1/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /api/v1/records?day=99999-99-99 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() + b"\r\n\r\n"]
    while time.time() < stop:
        try:
            s = socket.create_connection(("127.0.0.1", PORT), timeout=15, source_address=("127.0.3.1", 0))
            s.sendall(random.choice(junk)); r = s.recv(200); s.close()
            count("bad " + (r.split(b" ")[1].decode() if r.startswith(b"HTTP") else "closed"))
        except Exception as e: count("bad " + type(e).__name__)
idle = []
for i in range(1000):
    try: idle.append(socket.create_connection(("127.0.0.1", PORT), timeout=5, source_address=("127.0.4.1", 0)))
    except Exception as e: count("idle " + type(e).__name__)
ths = [threading.Thread(target=sse, args=(i,)) for i in range(200)] + [threading.Thread(target=heavy) for _ in range(4)] + [threading.Thread(target=bad) for _ in range(4)]
for t in ths: t.start()
lat = []
while time.time() < stop:
    a = time.time()
    try: st, _ = get("/api/v1/state", timeout=10); count(f"live {st}")
    except Exception as e: count("live " + type(e).__name__)
    lat.append(time.time() - a); time.sleep(0.5)
for t in ths: t.join()
for s in idle: s.close()
m1 = metrics(); c1 = cycles(m1)
b0, b1 = hist(m0, "pedf_cycle_lag_seconds"), hist(m1, "pedf_cycle_lag_seconds")
w0, w1 = hist(m0, "pedf_cycle_work_seconds"), hist(m1, "pedf_cycle_work_seconds")
def diff(a, b): return {k: b[k] - a.get(k, 0) for k in b}
print("cycles in load phase:", c1 - c0)
print("lag buckets during load:", diff(b0, b1))
print("work buckets during load:", diff(w0, w1))
lat.sort(); print("live latency s: median %.3f max %.3f n %d" % (lat[len(lat)//2], lat[-1], len(lat)))
print(json.dumps(stats, indent=1, sort_keys=True))
print([l for l in m1.splitlines() if l.startswith("pedf_http_connections_refused_total") or l.startswith("pedf_http_requests_total")])
proc.wait()
print("exit", proc.returncode); print("".join(lines[-8:]))
