#!/usr/bin/env bash
# Usage: scripts/hostile.sh [WORKDIR]
#
# Hostile cases against bakthat through its entry points (issue 11, "Figures to report"), one line per case:
#   CASE  TRIED  REFUSED  SURVIVED  MISPLACED
# TRIED attempts; REFUSED: bakthat said no (non-zero exit, or the row never entered the inventory); SURVIVED: it
# went through and did the right thing; MISPLACED: files written outside the restore target, or wrong bytes
# restored, or rows without data (target 0). Cases: tampered encrypted archives (header, data, final tag, index
# sidecar) under restore and verify; hostile .tgz entries (absolute, `..`, symlink escape) and hostile file names
# (absolute, `..`, NUL, 5000 characters, Unicode-normalisation twins) through journal objects, a crafted 0.6
# `.bakthat.sqlite` (import-legacy) and the 0.6 sync server; kill -9 during backups; sync-server abuse
# (scripts/sync-server-rss.sh); 32 concurrent readers of a mount with an 8 MiB cache (bytes compared, cache size
# sampled); injected store faults through storage::testing::Faulty (examples/hostile_faults.rs). Local store
# only; loopback only; not a timed test and not part of CI.
# Environment: BAKTHAT (binary; default: cargo build, then $CARGO_TARGET_DIR/debug/bakthat), KILLS (default 10).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-${ROOT}/target}
if [[ -z ${BAKTHAT:-} ]]; then
    (cd "${ROOT}" && cargo build --quiet --bin bakthat)
    BAKTHAT=${TARGET}/debug/bakthat
fi
WORK=${1:-$(mktemp -d /tmp/bakthat-hostile.XXXXXX)}
export BAKTHAT WORK KILLS=${KILLS:-10}
python3 - <<'EOF'
import io, json, os, random, shutil, signal, socket, sqlite3, subprocess, tarfile, time, unicodedata, base64

B, WORK = os.environ["BAKTHAT"], os.environ["WORK"]
rows = []

def line(case, tried, refused, survived, misplaced, note=""):
    rows.append((case, tried, refused, survived, misplaced, note))
    print(f"{case:<44} {tried:>5} {refused:>7} {survived:>8} {misplaced:>9}  {note}", flush=True)

class Home:
    def __init__(self, name, extra=""):
        self.d = os.path.join(WORK, name)
        shutil.rmtree(self.d, ignore_errors=True)
        for sub in ("home", "data", "store", "src", "out"):
            os.makedirs(os.path.join(self.d, sub))
        self.cfg = os.path.join(self.d, "bakthat.yml")
        with open(self.cfg, "w") as f:
            f.write(f"default:\n  default_destination: local\n  local_path: {self.d}/store\n{extra}")
    def p(self, *a):
        return os.path.join(self.d, *a)
    def env(self, password=None):
        e = {"PATH": os.environ["PATH"], "HOME": self.p("home"), "XDG_DATA_HOME": self.p("data"),
             "BAKTHAT_CONFIG": self.cfg, "BAKTHAT_DB": self.p("inv.sqlite")}
        if password:
            e["BAKTHAT_PASSWORD"] = password
        return e
    def run(self, *args, password=None, timeout=300):
        r = subprocess.run([B, *args], env=self.env(password), capture_output=True, timeout=timeout)
        return r.returncode, (r.stdout + r.stderr).decode(errors="replace")
    def popen(self, *args, password=None):
        return subprocess.Popen([B, *args], env=self.env(password), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    def rows(self, deleted=True):
        rc, out = self.run("show", "--json", *(["--deleted"] if deleted else []))
        try:
            v = json.loads(out[out.index("["):]) if "[" in out else []
        except ValueError:
            v = []
        return v if isinstance(v, list) else []

def outside_files(top, allowed):
    """Files under `top` (and the fixed /tmp/x) that are not in an allowed area."""
    found = set()
    for base in (top, "/tmp/x"):
        for dirpath, dirs, files in os.walk(base):
            if any(dirpath == a or dirpath.startswith(a + os.sep) for a in allowed):
                continue
            for f in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
                found.add(os.path.join(dirpath, f))
    return found

# ---- 1. tampered encrypted archives -------------------------------------------------------------------------
h = Home("tamper")
os.makedirs(h.p("src", "d"))
payload = os.urandom(300_000)
open(h.p("src", "d", "blob.bin"), "wb").write(payload)
h.run("backup", h.p("src", "d"), "--prompt", "no", password="pw")
stored = [f for f in os.listdir(h.p("store")) if f.endswith(".tgz.enc")][0]
arch, side = h.p("store", stored), h.p("store", stored + ".index")
orig_a, orig_s = open(arch, "rb").read(), open(side, "rb").read()
for where, path, orig, off in [("header", arch, orig_a, 30), ("data", arch, orig_a, len(orig_a) // 2),
                               ("final tag", arch, orig_a, len(orig_a) - 3), ("index sidecar", side, orig_s, len(orig_s) // 2)]:
    for cmd in ("restore", "verify"):
        bad = bytearray(orig); bad[off] ^= 0x40
        open(path, "wb").write(bad)
        out = h.p("out", f"{where}-{cmd}".replace(" ", "_"))
        os.makedirs(out)
        args = ["restore", stored, "--to", out] if cmd == "restore" else ["verify", stored]
        rc, _ = h.run(*args, password="pw")
        got = os.path.join(out, "d", "blob.bin")
        wrong = int(os.path.exists(got) and open(got, "rb").read() != payload)
        line(f"tampered {where}: {cmd}", 1, int(rc != 0), int(rc == 0 and not wrong), wrong)
        open(path, "wb").write(orig)

# ---- 2. hostile rows and archives through the journal --------------------------------------------------------
NAMES = {"absolute /tmp/x/pwn.txt": "/tmp/x/pwn.txt", "relative ../out/rel.txt": "../out/rel.txt",
         "NUL in name": "a\u0000b.txt", "5000-char name": "n" * 5000,
         "NFC twin": unicodedata.normalize("NFC", "caf\u00e9.txt"), "NFD twin": unicodedata.normalize("NFD", "caf\u00e9.txt")}

def hostile_tgz(kind):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as t:
        def add(name, data=b"pwned\n", link=None):
            ti = tarfile.TarInfo(name)
            if link:
                ti.type, ti.linkname = tarfile.SYMTYPE, link
                t.addfile(ti)
            else:
                ti.size = len(data); t.addfile(ti, io.BytesIO(data))
        if kind == "absolute":
            add("/tmp/x/tgz-abs.txt")
        elif kind == "dotdot":
            add("evil/../../tgz-rel.txt")
        else:
            add("evil/ln", link="/tmp/x"); add("evil/ln/tgz-link.txt")
    return buf.getvalue()

def journal_case(h, i, filename, compress, blob):
    """Plants one archive and one journal object naming it `filename`; returns the stored name."""
    ts = 20260101000000 + i
    stored = f"hostile{i}.{ts}" + (".tgz" if compress else "")
    open(h.p("store", stored), "wb").write(blob)
    rec = {"backend": "local", "backend_hash": "", "backup_date": 1767225600 + i, "filename": filename,
           "is_deleted": False, "last_updated": 1767225600 + i, "size": len(blob),
           "metadata": {"client": "stranger", "enc": None, "format": "bakthat-1", "is_enc": False},
           "stored_filename": stored, "tags": ""}
    key = f"bakthat-journal.{int(time.time() * 1000) + i}.{os.urandom(8).hex()}"
    open(h.p("store", key), "wb").write(b"bakthat-record-1 " + json.dumps({"kind": "backup", "record": rec}).encode() + b"\n")
    return stored

def restore_all(h, stored_names, label_of, entry):
    os.makedirs("/tmp/x", exist_ok=True)
    allowed = [h.p(s) for s in ("out", "store", "home", "data", "src")]
    before = outside_files(h.d, allowed)
    known = {r.get("stored_filename") for r in h.rows()}
    for stored in stored_names:
        label = label_of[stored]
        if stored not in known:
            line(f"{entry}: {label}", 1, 1, 0, 0, "row refused")
            continue
        out = h.p("out", stored[:40])
        os.makedirs(out, exist_ok=True)
        rc, _ = h.run("restore", stored, "--to", out, "--force")
        now = outside_files(h.d, allowed)
        new = now - before
        before = now
        line(f"{entry}: {label}", 1, int(rc != 0), int(rc == 0 and not new), len(new),
             ("wrote " + ", ".join(sorted(n[:60] for n in new))) if new else "")
    for f in ("/tmp/x/pwn.txt", "/tmp/x/tgz-abs.txt", "/tmp/x/tgz-link.txt"):
        if os.path.exists(f):
            os.remove(f)

h = Home("journal", "  compress: false\n")
label_of, names = {}, []
for i, (label, fn) in enumerate(NAMES.items()):
    s = journal_case(h, i, fn, False, b"pwned\n"); label_of[s] = f"single file named {label}"; names.append(s)
for j, kind in enumerate(("absolute", "dotdot", "symlink")):
    s = journal_case(h, 50 + j, "evil", True, hostile_tgz(kind)); label_of[s] = f".tgz with {kind} entry"; names.append(s)
rc, out = h.run("sync")
restore_all(h, names, label_of, "journal")

# ---- 3. hostile rows through a crafted 0.6 .bakthat.sqlite (import-legacy) -----------------------------------
h = Home("legacy")
db = h.p("legacy.sqlite")
c = sqlite3.connect(db)
c.executescript('''CREATE TABLE "backups" ("id" INTEGER NOT NULL PRIMARY KEY, "backend" VARCHAR(255) NOT NULL,
 "backend_hash" VARCHAR(255), "backup_date" INTEGER NOT NULL, "filename" TEXT NOT NULL, "is_deleted" SMALLINT NOT NULL,
 "last_updated" INTEGER NOT NULL, "metadata" VARCHAR(255) NOT NULL, "size" INTEGER NOT NULL, "stored_filename" TEXT NOT NULL,
 "tags" VARCHAR(255) NOT NULL);
 CREATE TABLE "config" ("id" INTEGER NOT NULL PRIMARY KEY, "key" VARCHAR(255) NOT NULL, "value" VARCHAR(255) NOT NULL);
 CREATE TABLE "jobs" ("id" INTEGER NOT NULL PRIMARY KEY, "filename" VARCHAR(255) NOT NULL, "job_id" VARCHAR(255) NOT NULL);
 CREATE TABLE "inventory" ("id" INTEGER NOT NULL PRIMARY KEY, "archive_id" VARCHAR(255) NOT NULL, "filename" VARCHAR(255) NOT NULL);''')
label_of = {}
for i, (label, fn) in enumerate(NAMES.items()):
    stored = f"legacy{i}.{20130101000000 + i}"
    label_of[stored] = f"row named {label}"
    c.execute("INSERT INTO backups VALUES (?, 'local', '', ?, ?, 0, ?, '{\"is_enc\": false}', 6, ?, '')",
              (i + 1, 1356998400 + i, fn, 1356998400 + i, stored))
    open(h.p("store", stored), "wb").write(b"pwned\n")
c.commit(); c.close()
h.run("import-legacy", "--db", db)
restore_all(h, list(label_of), label_of, "import-legacy")

# ---- 4. hostile rows through the 0.6 sync server -------------------------------------------------------------
srv_db = os.path.join(WORK, "syncsrv.sqlite")
if os.path.exists(srv_db):
    os.remove(srv_db)
subprocess.run([B, "sync-server", "--db", srv_db, "--add-user", "eve"], env={**os.environ, "BAKTHAT_SYNC_PASSWORD": "pw"},
               capture_output=True, check=True)
srv = subprocess.Popen([B, "sync-server", "--db", srv_db, "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE)
addr = srv.stderr.readline().decode().rsplit("//", 1)[-1].strip()
try:
    host, port = addr.rsplit(":", 1)
    rows_in, label_of = [], {}
    for i, (label, fn) in enumerate(NAMES.items()):
        stored = f"server{i}.{20260102000000 + i}"
        label_of[stored] = f"row named {label}"
        rows_in.append({"backend": "s3", "backend_hash": "", "backup_date": 1767312000 + i, "filename": fn,
                        "is_deleted": False, "last_updated": 1767312000 + i, "metadata": {"is_enc": False},
                        "size": 6, "stored_filename": stored, "tags": ""})
    body = json.dumps({"sync_ts": 0, "new": rows_in}).encode()
    s = socket.create_connection((host, int(port)), timeout=60)
    s.sendall(b"POST /backups/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + base64.b64encode(b"eve:pw") +
              b"\r\nbakthat-client: stranger\r\ncontent-type: application/json\r\nContent-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body)
    s.recv(100); s.close()
    h = Home("server", f"sync:\n  url: http://{addr}\n  username: eve\n  password: pw\n")
    h.run("sync")
    known = {r.get("stored_filename"): r for r in h.rows()}
    for stored, label in label_of.items():
        r = known.get(stored)
        # The server's rows name S3 objects this home cannot read: what counts is whether the name got in unchanged.
        line(f"sync server: {label}", 1, int(r is None), 0, 0,
             "row refused" if r is None else f"row accepted as {r.get('filename', '')[:40]!r} (its restore needs S3)")
finally:
    srv.terminate(); srv.wait()

# ---- 5. kill -9 during backups -------------------------------------------------------------------------------
h = Home("kill")
os.makedirs(h.p("src", "big"))
for k in range(40):
    open(h.p("src", "big", f"f{k}"), "wb").write(os.urandom(1 << 20))
orphans = without = 0
rng = random.Random(11)
kills = int(os.environ["KILLS"])
for k in range(kills):
    p = h.popen("backup", h.p("src", "big"), "--prompt", "no")
    time.sleep(rng.uniform(0.05, 3.0))
    p.send_signal(signal.SIGKILL); p.wait()
rows_now = [r for r in h.rows(False)]
listed = set(os.listdir(h.p("store")))
for r in rows_now:
    if r.get("stored_filename") not in listed:
        without += 1
row_names = {r.get("stored_filename") for r in rows_now}
orph = [f for f in listed if f.startswith("big.") and not f.endswith(".index") and f not in row_names]
line("kill -9 mid-backup: rows without data", kills, 0, kills - without, without)
line("kill -9 mid-backup: orphan archives", kills, 0, kills - len(orph), len(orph),
     "(an orphan loses nothing; `bakthat check` should list it)")

# ---- 6. mount readers under a small cache cap ----------------------------------------------------------------
import threading, hashlib
h = Home("mount")
os.makedirs(h.p("src", "tree"))
want = {}
for k in range(12):
    data = os.urandom(3 << 20)
    open(h.p("src", "tree", f"f{k}.bin"), "wb").write(data)
    want[f"f{k}.bin"] = hashlib.sha256(data).hexdigest()
h.run("backup", h.p("src", "tree"), "--prompt", "no")
mnt, cache = h.p("mnt"), h.p("cache")
os.makedirs(mnt); os.makedirs(cache)
cap = 8 << 20
rc, out = h.run("mount", mnt, "--cache-dir", cache, "--cache-size", "8M", "--daemon")
def cache_bytes():
    # Block files only: mount.log is the mount's own log, not part of the evictable set.
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(cache) for f in fs if f != "mount.log")
files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(mnt, "by-name")) for f in fs if f in want] if rc == 0 else []
readers, wrong, failed, peak = 32, 0, 0, 0
stop = threading.Event()
def watch():
    global peak
    while not stop.is_set():
        try:
            peak = max(peak, cache_bytes())
        except OSError:
            pass
        time.sleep(0.01)
def reader(i):
    global wrong, failed
    rng = random.Random(i)
    for path in rng.sample(files, min(6, len(files))):
        try:
            if hashlib.sha256(open(path, "rb").read()).hexdigest() != want[os.path.basename(path)]:
                wrong += 1
        except OSError:
            failed += 1
w = threading.Thread(target=watch); w.start()
ts = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
for t in ts: t.start()
for t in ts: t.join()
stop.set(); w.join()
subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
over = 1 if peak > cap else 0
line("mount: 32 readers x 6 files of 3 MiB, 8M cache", readers * 6 if files else 0, failed, readers * 6 - failed - wrong if files else 0,
     wrong + over, f"(peak cache {peak / (1 << 20):.1f} MiB of 8; mount rc {rc})")
EOF
echo "--- injected store faults (cargo run --example hostile_faults) ---"
(cd "${ROOT}" && cargo run --quiet --example hostile_faults -- "${WORK}/faults" 2>/dev/null)
echo "--- sync-server abuse (scripts/sync-server-rss.sh 200 60) ---"
HOLD_SECONDS=3 bash "${ROOT}/scripts/sync-server-rss.sh" 200 60 | sed 's/^/    /'
