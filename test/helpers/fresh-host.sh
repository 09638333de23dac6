# Shell functions every script on a fresh host (fresh-host.ts) gets: `systemctl enable --now UNIT` and
# `systemctl reload UNIT` played as systemd would play them, and scp between the test's machines
# (HOST:PATH DEST, copied from the other machine's overlay). OFFLINK_HOST_DIR and OFFLINK_HOSTS_DIR are set
# by fresh-host.ts.
systemctl() {
  case "$1" in
    enable)
      [ "$2" = --now ] && [ $# -eq 3 ] || { echo "test systemctl: only 'enable --now UNIT' is played" >&2; return 2; }
      offlink_start_unit "$3" ;;
    reload)
      kill -HUP "$(cat "$OFFLINK_HOST_DIR/units/${2%.service}.pid")" ;;
    *) echo "test systemctl: '$1' is not played by the test" >&2; return 2 ;;
  esac
}
offlink_unit_key() { sed -n "s/^$2=//p" "$1"; }
offlink_start_unit() {
  local unit="${1%.service}" file="/lib/systemd/system/${1%.service}.service"
  [ -f "$file" ] || { echo "test systemctl: no unit $file" >&2; return 1; }
  local d caps="" nnp="" pre start log pid
  for d in $(offlink_unit_key "$file" StateDirectory); do mkdir -p "/var/lib/$d"; done
  for d in $(offlink_unit_key "$file" RuntimeDirectory); do mkdir -p "/run/$d"; done
  for c in $(offlink_unit_key "$file" CapabilityBoundingSet); do
    c="${c#CAP_}"; caps="$caps,+${c,,}"
  done
  [ "$(offlink_unit_key "$file" NoNewPrivileges)" = yes ] && nnp=--no-new-privs
  while IFS= read -r pre; do [ -z "$pre" ] || $pre; done < <(offlink_unit_key "$file" ExecStartPre)
  start="$(offlink_unit_key "$file" ExecStart)"
  mkdir -p "$OFFLINK_HOST_DIR/units"
  log="$OFFLINK_HOST_DIR/units/$unit.log"
  setpriv --bounding-set "-all$caps" $nnp -- $start > "$log" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" > "$OFFLINK_HOST_DIR/units/$unit.pid"
  for _ in $(seq 300); do
    grep -q '"msg":"\(home agent\|agent\) started"' "$log" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "$unit exited:" >&2; cat "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "$unit did not start in 30 s:" >&2; cat "$log" >&2; return 1
}
scp() {
  [ $# -eq 2 ] && [[ "$1" == *:* ]] || { echo "test scp: expected HOST:PATH DEST" >&2; return 2; }
  cp "$OFFLINK_HOSTS_DIR/${1%%:*}/upper${1#*:}" "$2"
}
