import hashlib, json, subprocess, time, httpx
from bench.servers import running
def push(c, base, repo, data, ctype="application/octet-stream"):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    r = c.post(f"{base}/v2/{repo}/blobs/uploads/")
    loc = httpx.URL(base).join(r.headers["location"]).copy_merge_params({"digest": d})
    r = c.put(loc, content=data, headers={"Content-Type": ctype})
    assert r.status_code == 201, r.text
    return d
lua = '''
wrk.method = "%s"
wrk.headers["Accept"] = "application/vnd.oci.image.manifest.v1+json"
done = function(summary, latency, requests)
  io.write(string.format("WRK_JSON %%d %%d %%d %%d\\n", summary.requests, summary.duration, summary.errors.status, summary.errors.timeout))
end
'''
for kind, w, lvl in [("distribution", None, "info"), ("distribution", None, "error"), ("ours", 2, "error")]:
    with running(kind, w, lvl) as s:
        base = s.base_url
        with httpx.Client() as c:
            cfg = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
            cd = push(c, base, "bench/app", cfg)
            ld = push(c, base, "bench/app", b"x"*1000)
            m = json.dumps({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":len(cfg)},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":ld,"size":1000}]}).encode()
            r = c.put(f"{base}/v2/bench/app/manifests/latest", content=m, headers={"Content-Type":"application/vnd.oci.image.manifest.v1+json"})
            md = r.headers["docker-content-digest"]
        for meth in ["GET"]:
            open("/tmp/benchscratch/s.lua","w").write(lua % meth)
            for ref in ["latest", md]:
              for t, cn in [(1,1),(1,32)]:
                c0 = s.cpu_seconds()
                out = subprocess.run(["wrk", f"-t{t}", f"-c{cn}", "-d3s", "-s", "/tmp/benchscratch/s.lua", f"{base}/v2/bench/app/manifests/{ref}"], capture_output=True, text=True)
                line = [l for l in out.stdout.splitlines() if "WRK_JSON" in l]
                print(kind, lvl, ref[:10], t, cn, line, "cpu", round(s.cpu_seconds()-c0,2))
            c0 = s.cpu_seconds()
            out = subprocess.run(["wrk", f"-t1", f"-c32", "-d3s", "-s", "/tmp/benchscratch/s.lua", f"{base}/v2/bench/app/tags/list"], capture_output=True, text=True)
            print(kind, lvl, "tags", [l for l in out.stdout.splitlines() if "WRK_JSON" in l], "cpu", round(s.cpu_seconds()-c0,2))
            c0 = s.cpu_seconds()
            out = subprocess.run(["wrk", f"-t1", f"-c32", "-d3s", f"{base}/v2/"], capture_output=True, text=True)
            print(kind, lvl, "base", [l for l in out.stdout.splitlines() if "Requests/sec" in l], "cpu", round(s.cpu_seconds()-c0,2))
