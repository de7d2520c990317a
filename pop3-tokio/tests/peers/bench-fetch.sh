#!/usr/bin/env bash
# Throughput of the `fetch` example against mpop, end to end, on one private
# Dovecot holding a generated maildrop (default 100 MB). Both clients fetch
# everything (keeping it on the server) into a fresh Maildir, alternately,
# RUNS times each, over plain POP3 and over POP3S; the median MB/s of each
# and their ratio are printed. Not part of the test suite.
#
#   tests/peers/bench-fetch.sh [MB]        (env: RUNS=3, MODES="plain pops")
#
# Needs dovecot-core, dovecot-pop3d, mpop, python3, openssl (apt-get install).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
crate=$(cd "$here/../.." && pwd)
mb=${1:-100}
runs=${RUNS:-3}
modes=${MODES:-"plain pops"}

command -v mpop >/dev/null || { echo "mpop missing: apt-get install -y mpop" >&2; exit 3; }

work=$(mktemp -d "${TMPDIR:-/tmp}/pop3-bench-XXXXXX")
# Dovecot's unprivileged processes must reach the instance inside it.
chmod 755 "$work"
cleanup() {
  bash "$here/dovecot.sh" stop "$work/dovecot" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/dovecot/mail/alice/"{cur,new,tmp}
printf 'alice:secret\n' >"$work/dovecot/passwords"

# The maildrop: mostly 1 MB messages, a few of 5 MB, some small ones; base64
# bodies of deterministic pseudo-random bytes, LF line ends as stored.
python3 - "$work/dovecot/mail/alice/cur" "$mb" <<'EOF'
import base64, os, random, sys
cur, mb = sys.argv[1], int(sys.argv[2])
rng = random.Random(2384)
total, i = 0, 0
goal = mb * 1000 * 1000
while total < goal:
    size = 5_000_000 if i % 20 == 7 else (2_000 if i % 10 == 3 else 1_000_000)
    size = min(size, goal - total) or 1
    raw = rng.randbytes(size * 3 // 4)
    b64 = base64.encodebytes(raw)
    head = (f"From: bench@example.org\nTo: alice@example.org\nSubject: bench {i}\n"
            f"Message-ID: <bench-{i}@example.org>\nMIME-Version: 1.0\n"
            f"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n").encode()
    data = head + b64
    with open(os.path.join(cur, f"{1_700_000_000 + i}.M{i}P1.bench:2,"), "wb") as f:
        f.write(data)
    total += len(data)
    i += 1
print(f"{i} messages, {total} bytes", file=sys.stderr)
EOF

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
pop3_port=$(free_port)
pop3s_port=$(free_port)
POP3_PORT=$pop3_port POP3S_PORT=$pop3s_port LISTEN=127.0.0.1 OWNER_PID=$$ \
  bash "$here/dovecot.sh" start "$work/dovecot" >"$work/dovecot.env"
ca=$work/dovecot/tls/ca.pem

(cd "$crate" && cargo build --release -q -p pop3-tokio --example fetch)
target=$(cd "$crate" && cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
fetch=$target/release/examples/fetch

bytes=$(find "$work/dovecot/mail/alice/cur" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
count=$(find "$work/dovecot/mail/alice/cur" -type f | wc -l)

now() { date +%s.%N; }

run_ours() { # mode -> seconds
  local mode=$1 md=$work/ours url args=()
  rm -rf "$md"
  if [ "$mode" = pops ]; then
    url="pops://alice@localhost:$pop3s_port"; args=(--ca-file "$ca")
  else
    url="pop://alice@127.0.0.1:$pop3_port"; args=(--auth USER)
  fi
  local t0 t1
  t0=$(now)
  POP3_PASSWORD=secret "$fetch" "$url" --maildir "$md" "${args[@]}" </dev/null 2>"$work/ours.err" \
    || { cat "$work/ours.err" >&2; exit 1; }
  t1=$(now)
  local got
  got=$(find "$md/new" "$md/cur" -type f | wc -l)
  [ "$got" -eq "$count" ] || { echo "fetch stored $got of $count" >&2; exit 1; }
  echo "$t1 - $t0" | bc -l
}

run_mpop() { # mode -> seconds
  local mode=$1 md=$work/mpop
  rm -rf "$md" "$work/mpop.uidls"
  mkdir -p "$md/"{cur,new,tmp}
  {
    echo "account bench"
    if [ "$mode" = pops ]; then
      echo "host localhost"; echo "port $pop3s_port"
      echo "tls on"; echo "tls_starttls off"; echo "tls_trust_file $ca"
    else
      echo "host 127.0.0.1"; echo "port $pop3_port"; echo "tls off"
    fi
    echo "user alice"; echo "password secret"; echo "auth user"
    echo "delivery maildir $md"; echo "uidls_file $work/mpop.uidls"
    echo "received_header off"; echo "keep on"; echo "pipelining auto"
  } >"$work/mpoprc"
  chmod 600 "$work/mpoprc"
  local t0 t1
  t0=$(now)
  mpop -q -C "$work/mpoprc" bench </dev/null 2>"$work/mpop.err" || { cat "$work/mpop.err" >&2; exit 1; }
  t1=$(now)
  local got
  got=$(find "$md/new" "$md/cur" -type f | wc -l)
  [ "$got" -eq "$count" ] || { echo "mpop stored $got of $count" >&2; exit 1; }
  echo "$t1 - $t0" | bc -l
}

median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

echo "maildrop: $count messages, $(echo "scale=1; $bytes / 1000000" | bc) MB; $runs runs each"
for mode in $modes; do
  : >"$work/t.ours"; : >"$work/t.mpop"
  for _ in $(seq "$runs"); do
    run_ours "$mode" >>"$work/t.ours"
    run_mpop "$mode" >>"$work/t.mpop"
  done
  ours=$(median <"$work/t.ours")
  theirs=$(median <"$work/t.mpop")
  ours_mbs=$(echo "scale=1; $bytes / 1000000 / $ours" | bc -l)
  mpop_mbs=$(echo "scale=1; $bytes / 1000000 / $theirs" | bc -l)
  ratio=$(echo "scale=2; $theirs / $ours" | bc -l)
  printf '%-5s fetch %6.1f MB/s (%.2f s)   mpop %6.1f MB/s (%.2f s)   fetch/mpop %s\n' \
    "$mode" "$ours_mbs" "$ours" "$mpop_mbs" "$theirs" "$ratio"
done
