#!/usr/bin/env python3
"""Many-key JSON bodies (issue: one object with many keys stalled the server): time to answer a chat request whose
`logit_bias` has N keys, while another connection polls /healthz. Usage: scripts/bench/json_keys.py BINARY"""
import subprocess, re, time, tempfile, threading, http.client, json, os, sys
d = tempfile.mkdtemp()
open(f"{d}/c.yaml","w").write('server: {listen: "127.0.0.1:0", max_body_bytes: 16777216}\nupstreams: [{name: u, base_url: "http://127.0.0.1:9/v1", api_key: k}]\nroutes: [{model: "gpt-*", upstreams: [u]}]\n')
p = subprocess.Popen([sys.argv[1], "serve", "--config", f"{d}/c.yaml", "--db", f"{d}/x.db"], stderr=open(f"{d}/err","w"))
port=None
for _ in range(200):
    m = re.search(r"listening on http://127.0.0.1:(\d+)", open(f"{d}/err").read())
    if m: port=int(m.group(1)); break
    time.sleep(0.05)
def body(n, model="nope"):
    return ('{"model":"%s","messages":[{"role":"user","content":"hi"}],"logit_bias":{' % model + ",".join(f'"{i}":0' for i in range(n)) + "}}").encode()
for n in (10_000, 50_000, 99_990, 100_500):
    b = body(n)
    lat=[]; stop=threading.Event()
    def probe():
        c = http.client.HTTPConnection("127.0.0.1", port)
        while not stop.is_set():
            t=time.perf_counter(); c.request("GET","/healthz"); c.getresponse().read(); lat.append(time.perf_counter()-t)
    th=threading.Thread(target=probe); th.start(); time.sleep(0.2)
    c = http.client.HTTPConnection("127.0.0.1", port)
    t=time.perf_counter(); c.request("POST","/v1/chat/completions", b, {"Content-Type":"application/json"}); r=c.getresponse(); r.read(); el=time.perf_counter()-t
    stop.set(); th.join()
    print(f"{n:>7} keys ({len(b)/1e6:.2f} MB): {r.status} in {el*1000:.0f} ms; /healthz meanwhile: {len(lat)} answers, max {max(lat)*1000:.1f} ms, median {sorted(lat)[len(lat)//2]*1000:.2f} ms")
p.terminate(); p.wait()
