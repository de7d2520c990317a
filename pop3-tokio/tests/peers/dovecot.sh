#!/usr/bin/env bash
# A private, throwaway Dovecot POP3 server on loopback, for interoperability
# tests. Nothing under /etc is read or written: the whole instance (config,
# sockets, state, log, users) lives in one directory chosen by the caller.
#
#   dovecot.sh start DIR     start an instance in DIR, print KEY=VALUE lines
#   dovecot.sh stop DIR      stop the instance in DIR and wait until it is gone
#
# DIR is prepared by the caller:
#   DIR/mail/USER/{cur,new,tmp}   one Maildir per user (messages in cur/)
#   DIR/passwords                 optional, "user:password" lines; without it
#                                 every Maildir under DIR/mail gets "secret"
#   DIR/extra.conf                optional, appended to the generated config
#                                 (later settings win), e.g.
#                                 "disable_plaintext_auth = yes"
#   DIR/tls/{ca.pem,server.pem,server.key}
#                                 optional; made here with the openssl CLI
#                                 (a private CA and a leaf for localhost,
#                                 127.0.0.1 and ::1) when missing
#
# Environment for "start":
#   POP3_PORT, POP3S_PORT   loopback ports to listen on (required)
#   LISTEN                  addresses (default 127.0.0.1, plus ::1 when the
#                           loopback interface has IPv6)
#   OWNER_PID               optional: a watcher kills the instance once this
#                           process has exited (a test run killed before its
#                           clean-up ran leaves no server behind)
#   REMOVE_ON_OWNER_EXIT    1: the watcher then also deletes DIR (for a
#                           temporary DIR the owner would have deleted)
#
# Output of "start" (stdout): LISTEN, POP3_PORT, POP3S_PORT, CA, DOVECOT_PID,
# DOVECOT_LOG, DOVECOT_CONF.
# Exit status: 0 started; 2 usage; 3 Dovecot not installed; 75 a port was
# already taken (pick other ports and retry); 1 any other failure.
#
# As root, Dovecot's own unprivileged users run the service (dovenull for the
# login processes, dovecot for the internal ones) and the mail is handed to
# nobody:nogroup, so DIR is made world-traversable (mode 0755). As any other
# user everything runs as that user and chroots are turned off.
set -euo pipefail

die() { echo "dovecot.sh: $*" >&2; exit "${2:-1}"; }
usage() { die "usage: dovecot.sh start|stop DIR" 2; }

[ $# -eq 2 ] || usage
action=$1
dir=$2
[ -d "$dir" ] || die "no such directory: $dir" 2
dir=$(cd "$dir" && pwd)

run=$dir/run
pidfile=$run/master.pid
watchfile=$dir/watcher.pid

# Fields of /proc/PID/stat after the command name: state ppid pgrp session.
proc_fields() {
  local line
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
  read -r -a fields <<<"${line##*) }"
}

# Live (not zombie) processes of the process group $1.
group_alive() {
  local p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    if proc_fields "$p" && [ "${fields[2]}" = "$1" ] && [ "${fields[0]}" != Z ]; then
      return 0
    fi
  done
  return 1
}

stop_instance() {
  local master watcher
  if [ -f "$watchfile" ]; then
    watcher=$(cat "$watchfile" 2>/dev/null || true)
    if [ -n "$watcher" ] && proc_fields "$watcher" && [ "${fields[2]}" = "$watcher" ]; then
      kill -KILL -- "-$watcher" 2>/dev/null || true
    fi
    rm -f "$watchfile"
  fi
  [ -f "$pidfile" ] || return 0
  master=$(cat "$pidfile" 2>/dev/null || true)
  # Only signal a Dovecot master that leads its own process group (it calls
  # setsid() when it daemonises; all its children stay in that group).
  if [ -n "$master" ] && [ "$(cat "/proc/$master/comm" 2>/dev/null)" = dovecot ] \
    && proc_fields "$master" && [ "${fields[2]}" = "$master" ]; then
    kill -KILL -- "-$master" 2>/dev/null || true
    local i
    for i in $(seq 500); do
      group_alive "$master" || break
      sleep 0.01
    done
    if group_alive "$master"; then
      die "dovecot process group $master still alive after 5 s"
    fi
  fi
  rm -f "$pidfile"
}

case $action in
  stop)
    stop_instance
    exit 0
    ;;
  start) ;;
  *) usage ;;
esac

# ---------------------------------------------------------------- start
[ -n "${POP3_PORT:-}" ] && [ -n "${POP3S_PORT:-}" ] || die "POP3_PORT and POP3S_PORT are required" 2
if ! command -v dovecot >/dev/null 2>&1 || [ ! -x /usr/lib/dovecot/pop3 ]; then
  die "Dovecot's POP3 server is not installed: apt-get install -y dovecot-core dovecot-pop3d" 3
fi
[ -d "$dir/mail" ] || die "no Maildir root: $dir/mail" 2

# A previous instance in the same directory is replaced.
stop_instance

if [ -z "${LISTEN:-}" ]; then
  LISTEN=127.0.0.1
  if grep -qs ' lo$' /proc/net/if_inet6; then LISTEN="127.0.0.1, ::1"; fi
fi

mkdir -p "$run" "$dir/state" "$dir/tls"

if [ "$(id -u)" = 0 ]; then
  mail_uid=$(id -u nobody)
  mail_gid=$(id -g nobody)
  login_user=dovenull
  internal_user=dovecot
  unprivileged=""
  chmod 0755 "$dir"
else
  mail_uid=$(id -u)
  mail_gid=$(id -g)
  login_user=$(id -un)
  internal_user=$login_user
  unprivileged="default_internal_group = $(id -gn)
service pop3-login {
  chroot =
}
service anvil {
  chroot =
}"
fi

# TLS material: a private CA signs a leaf (clients such as rustls refuse a
# self-signed leaf used as its own trust anchor).
tls=$dir/tls
if [ ! -s "$tls/ca.pem" ] || [ ! -s "$tls/server.pem" ] || [ ! -s "$tls/server.key" ]; then
  command -v openssl >/dev/null 2>&1 || die "no TLS files in $tls and no openssl: apt-get install -y openssl"
  (
    cd "$tls"
    umask 077
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=pop3-rs test CA" -days 3650 -keyout ca.key -out ca.pem \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    cat >leaf.ext <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
EXT
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -days 3650 -extfile leaf.ext -out server.pem 2>/dev/null
    chmod 0644 ca.pem server.pem
  ) || die "could not make the TLS certificates with openssl"
fi

# Users: a passwd-file with {PLAIN} passwords, so that APOP, CRAM-MD5 and
# SCRAM work too. Home = the user's Maildir.
users=$dir/users
: >"$users"
add_user() {
  [ -n "$1" ] || return 0
  case $1 in */* | *:* | .*) die "bad user name: $1" 2 ;; esac
  mkdir -p "$dir/mail/$1/cur" "$dir/mail/$1/new" "$dir/mail/$1/tmp"
  printf '%s:{PLAIN}%s:%s:%s::%s::\n' "$1" "$2" "$mail_uid" "$mail_gid" "$dir/mail/$1" >>"$users"
}
if [ -f "$dir/passwords" ]; then
  while IFS= read -r entry || [ -n "$entry" ]; do
    [ -n "$entry" ] || continue
    add_user "${entry%%:*}" "${entry#*:}"
  done <"$dir/passwords"
else
  for maildir in "$dir"/mail/*/; do
    [ -d "$maildir" ] || continue
    maildir=${maildir%/}
    add_user "${maildir##*/}" secret
  done
fi
chmod 0644 "$users"
if [ "$(id -u)" = 0 ]; then chown -R "$mail_uid:$mail_gid" "$dir/mail"; fi

log=$dir/dovecot.log
conf=$dir/dovecot.conf
dh=""
if [ -r /usr/share/dovecot/dh.pem ]; then dh="ssl_dh = </usr/share/dovecot/dh.pem"; fi
cat >"$conf" <<EOF
# Private test instance; see dovecot.sh.
protocols = pop3
listen = $LISTEN
base_dir = $run
state_dir = $dir/state
instance_name = pop3-rs-test-$$
hostname = localhost
log_path = $log
default_login_user = $login_user
default_internal_user = $internal_user
first_valid_uid = 1
first_valid_gid = 1
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256 apop
auth_failure_delay = 0
auth_verbose = yes
mail_location = maildir:~
pop3_uidl_format = %f
pop3_no_flag_updates = yes
protocol pop3 {
  mail_max_userip_connections = 1000
}
ssl = yes
ssl_cert = <$tls/server.pem
ssl_key = <$tls/server.key
$dh
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $users
}
userdb {
  driver = passwd-file
  args = username_format=%u $users
}
service pop3-login {
  inet_listener pop3 {
    port = $POP3_PORT
  }
  inet_listener pop3s {
    port = $POP3S_PORT
    ssl = yes
  }
}
$unprivileged
EOF
if [ -f "$dir/extra.conf" ]; then cat "$dir/extra.conf" >>"$conf"; fi

: >"$log"
# The master daemonises; its stdio must not be our stdout, or a caller that
# reads our output to the end would wait for Dovecot to exit.
startout=$dir/dovecot-start.out
if ! dovecot -c "$conf" </dev/null >"$startout" 2>&1; then
  if grep -qs 'Address already in use' "$startout" "$log"; then
    cat "$startout" >&2
    die "a port is already in use" 75
  fi
  cat "$startout" "$log" >&2
  die "dovecot did not start"
fi

# Wait for the pid file and both listeners.
up=0
for _ in $(seq 500); do
  if [ -s "$pidfile" ] \
    && (exec 3<>"/dev/tcp/127.0.0.1/$POP3_PORT") 2>/dev/null \
    && (exec 3<>"/dev/tcp/127.0.0.1/$POP3S_PORT") 2>/dev/null; then
    up=1
    break
  fi
  sleep 0.01
done
if [ "$up" != 1 ]; then
  cat "$log" >&2
  stop_instance
  if grep -qs 'Address already in use' "$log"; then die "a port is already in use" 75; fi
  die "dovecot did not come up within 5 s"
fi
master=$(cat "$pidfile")

if [ -n "${OWNER_PID:-}" ]; then
  # Its own process group (setsid), detached from our stdio, so "stop" can
  # end it with the group and a caller reading our stdout is not held.
  setsid bash -c '
    alive() {
      local st
      { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
      st=${st##*) }
      [ "${st%% *}" != Z ]
    }
    while alive "$1" && alive "$2"; do sleep 0.5; done
    # The owner is still there: the server stopped by itself or was stopped.
    if alive "$1"; then exit 0; fi
    if [ "$(cat "/proc/$2/comm" 2>/dev/null)" = dovecot ]; then kill -KILL -- "-$2" 2>/dev/null; fi
    if [ "$3" = 1 ]; then sleep 0.2; rm -rf -- "$4"; fi
  ' watcher "$OWNER_PID" "$master" "${REMOVE_ON_OWNER_EXIT:-0}" "$dir" </dev/null >/dev/null 2>&1 &
  echo $! >"$watchfile"
fi

cat <<EOF
LISTEN=$LISTEN
POP3_PORT=$POP3_PORT
POP3S_PORT=$POP3S_PORT
CA=$tls/ca.pem
DOVECOT_PID=$master
DOVECOT_LOG=$log
DOVECOT_CONF=$conf
EOF
