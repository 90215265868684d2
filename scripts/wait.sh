# Sourced by scripts/demo.sh and scripts/fleet.sh, which set `who` (the name their messages carry).
# `probe PORT`: is something listening on 127.0.0.1:PORT? `ready URL`: does URL answer 200?
# `wait_for CMD...`: runs CMD until it succeeds, for up to 30 s.
# `ports_free HINT PORT...`: exits with a message when one of the ports is in use.
probe() {
  python3 -c 'import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))))' "$1"
}
ready() {
  python3 -c 'import urllib.request,sys; sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=1).status == 200 else 1)' "$1" 2>/dev/null
}
wait_for() {
  for _ in $(seq 1 150); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  echo "$who: timed out waiting for: $*" >&2
  return 1
}
ports_free() {
  local hint=$1 port
  shift
  for port in "$@"; do
    if probe "$port"; then
      echo "$who: port $port is in use ($hint): stop it first" >&2
      exit 1
    fi
  done
}
