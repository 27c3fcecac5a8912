"""What limits each remaining gap against the peers: the section under docs/peer-benchmarks.md's tables.

Static text, not measured by the run that writes the page: these are the findings of the profiles
(perf with DWARF stacks, py-spy, cProfile) and interleaved A/B runs made while closing the gaps, each
with how it was measured. The tables above it are the current figures; where they and this text
disagree, the tables are newer.
"""

from __future__ import annotations

WHAT_LIMITS = """\
## What limits each gap

How these were found: one registry at a time on this machine, the same clients as above, server CPU
from psutil (user + system of every process of the server), profiles of one worker (perf with DWARF
call stacks for C and the kernel, py-spy for Python). A change was kept only when an interleaved A/B
(variant, baseline, variant, ...; 4 or more rounds) showed it in CPU per request or per GiB, which
varies far less on these VMs than requests/s or MB/s (±20% between runs). The VM changes between
sessions: the earlier runs were on an AMD EPYC, the figures below on an Intel Xeon where zot's pushes
and manifest GETs come out faster relative to ours (plain push 0.84 of zot there, 0.72 here).

### The stack's ceiling ("hypercorn alone" in the tables)

`bench/ceiling_app.py` is the least a registry can do for each request of this benchmark (hash and
write what it receives, answer constants), served by hypercorn exactly as ours is (same workers,
settings, patches and TLS). Its figures bound what any app on Quart + hypercorn can show, and they
split each gap into the stack's part and ours:
- Below the floor even for the ceiling, so out of reach of any registry on this stack: peak RSS
  against distribution 3 (0.22-0.32: three Python worker processes against one Go process), the tags
  list against distribution 3 (0.82-0.98 plain, 0.85 with TLS at 1 connection), and with TLS the
  chunked push against zot (0.72 of zot's MB/s on the EPYC).
- At the ceiling already: blob pushes and pulls in CPU per GiB (ours 0.96-0.97 of the ceiling's
  CPU per GiB, plain); push MB/s is 0.81-0.83 of the ceiling's because ours fsyncs every blob
  before it answers 201 (the ceiling writes without fsync, as distribution does).
- Reachable but not reached: manifest GET and HEAD against distribution 3. The ceiling is 1.1-1.6x
  distribution 3 there, ours 0.58-0.71 of the ceiling: that share is our own per-request code
  (routing, auth, storage lookup, metrics, logging; below).

### Request rates (manifest GET and HEAD, tags list) against zot and distribution 3

A manifest GET moves a few hundred bytes, so its cost is all per request: 0.29 ms of server CPU in
one worker at 1 connection on the EPYC, 0.35-0.5 ms on this Xeon (it was 0.5 ms on the EPYC before
this issue: /v2/ is answered straight from ASGI, `registry/api/front.py`, without Quart's
per-request tasks, contexts and URL rules; no task per bodyless request but hypercorn's own; the
keep-alive timeout is a loop timer; one socket write per small answer). By package, a py-spy profile
of that GET: h11 27%, hypercorn 14%, asyncio 11%, C builtins 14% (socket calls, dict and bytes
work), our own code 16%, werkzeug 7%, prometheus-client 4%, pathlib 3%. The werkzeug share was the
LocalProxy the handlers read the request through (about 1.5 us a read): it is now one property per
attribute (`registry/api/requests.py`, 0.13 us a read); end to end that is inside this VM's noise.
About half of every request is the HTTP/1.1 layer in pure Python (h11's parser and serializer,
hypercorn's stream state machine and the event loop around them), which zot and distribution do in
compiled Go, one goroutine per connection, on both cores without a GIL. Even with all of our own
16% gone a worker would stay near 0.25 ms a request on the EPYC. What is left is a compiled HTTP
parser under hypercorn (h11 is hypercorn's protocol and there is no drop-in) or another server,
which the project's stack rules out. At 32 connections three worker processes share two cores with
wrk.

### Peak RSS

Ours is a supervisor plus one forked worker per core (3 here), each a Python interpreter with the
app imported: 220-270 MiB in all, against one Go process (zot about 150 MiB, distribution 3 about
60 MiB). Forking from a parent that imported the app shares the interpreter's pages until they are
written; the rest is structural, a process per core being how Python uses more than one core. A
1 GiB push and pull add less than 64 MiB (`tests/registry/test_memory.py`).

### Blob pushes (plain 0.69-0.72 of zot here, with TLS 0.51-0.55)

A 64 MiB push in one worker, plain, py-spy: SHA-256 of every byte 24% (`checked_chunks`), the
buffered write into the page cache 18%, the event loop's C side 24% (socket reads), the fsync before
the blob is published 5% (a durability cost distribution does not pay); perf: kernel 34-36%,
libcrypto 27-29%, libpython 18-20%, libc 14-16%, nearly all of it memmove. Every byte is copied
about six times in user space: from the socket into bytes (uvloop), into and out of asyncio's
StreamReader (a bytearray extended, then sliced into bytes and deleted from the front), into h11's
receive buffer and out of it (h11 slices twice per piece), and into bytes again for the app
(hypercorn). Changes kept, each measured in interleaved rounds of 5 pushes:
- body reads of 256 KiB instead of 64 KiB (fewer trips through h11, hypercorn's queue and the body)
  with glibc's mmap threshold raised (`registry/allocator.py`), so the pieces reuse warm heap pages
  instead of an mmap and munmap per copy: about 2.3 instead of 2.9 CPU-s per GiB on the EPYC;
- the request body keeps the pieces as they came (`streaming.FlowControlledBody`) where Quart's Body
  copied every byte into a bytearray and again into bytes: 2.67 instead of 2.91 CPU-s per GiB here
  (mean of 4 rounds, lower in each), memmove 14% to 11% of the worker's profile.
Tried and dropped: hashing and writing in a thread while the loop reads (3.49 against 2.88
CPU-s/GiB: GIL hand-offs on two cores); 1 MiB reads (the copies stop fitting in the caches); one
copy instead of two in h11's receive buffer (no difference that 4 rounds could tell from noise).
With TLS, add AES-GCM decryption in libcrypto and the copies through OpenSSL's memory BIOs (asyncio
and uvloop run TLS on memory BIOs, never on the socket): zot decrypts in Go straight from the socket.

### The proxying member with TLS (docs/proxy-benchmarks.md)

The proxying member decrypts what the owner sends and encrypts it again for the client; the owner
encrypts once. AES-GCM alone is then twice the owner's crypto, and the rest of the forward is what
the plain proxy costs (about the owner's direct CPU per GiB). perf of the proxying member: libcrypto
28-31%, libc 27-30% (memmove 21-23%), kernel 25%, libpython 11%. The copies, by caller: aiohttp
joining the pieces it buffered (5%), uvloop's TLS read path joining what it decrypted (2.6%), the
outgoing and incoming OpenSSL memory BIOs (4.3% and 2.5%), aiohttp's parser copying the body into
bytes (3.2%), SSL_write and SSL_read (2.7% and 1.9%). Taking aiohttp's pieces one by one
(`iter_chunks`) instead of joined (`iter_any`) saved the join and cost as much in more, smaller
writes (2.69 against 2.67 CPU-s/GiB, 3 rounds of 8 pulls each). The rest is inside uvloop, aiohttp
and OpenSSL's memory BIOs, so the proxying member stays near twice the owner's direct CPU per GiB
(floor 1.5), and well below zot's proxying member (about half of its CPU per GiB).
"""
