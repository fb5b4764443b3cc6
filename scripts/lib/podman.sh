# shellcheck shell=bash
# Podman with a Docker-compatible API socket, and the tiny local test image
# (sourced; needs common.sh).
#
#   podman_install                 # apt-get only what is missing (root)
#   podman_write_conf FILE         # containers.conf; export CONTAINERS_CONF=FILE
#   image_ensure RUN_DIR           # build $CYN_TEST_IMAGE unless it is up to date
#   podman_start RUN_DIR           # API service on RUN_DIR/podman.sock; sets
#                                  # CYN_PODMAN_PID, CYN_PODMAN_SOCK
#   podman_check                   # runc + cgroupfs in use, a limited container runs
#   podman_stop                    # stops the service by its PID

CYN_TEST_IMAGE=${CYN_TEST_IMAGE:-localhost/cynode-test:latest}
CYN_IMAGE_LABEL=io.cynodeai.test-image.sha256
CYN_PODMAN_PID=
CYN_PODMAN_SOCK=
CYN_PODMAN_LOG=

# Applets the tests may call inside the image (all are busybox applets).
CYN_IMAGE_APPLETS="sh echo cat ls sleep dd head yes env id nc wget true false printf mkdir rm
  touch tee wc seq kill tail grep sed awk tr cut sort uniq test [ pwd whoami cp mv chmod ln
  stat date basename dirname find xargs timeout uname hostname sha256sum base64 readlink
  mktemp nproc ps du df"

_dpkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

podman_install() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v newuidmap >/dev/null || missing+=(uidmap)
  _dpkg_installed busybox-static || missing+=(busybox-static)
  command -v curl >/dev/null || missing+=(curl)
  if ((${#missing[@]})); then
    apt_install "${missing[@]}" || return 1
  fi
  info "$(podman --version), $(runc --version | head -1), busybox-static $(dpkg-query -W -f='${Version}' busybox-static)"
  if command -v crun >/dev/null; then
    info "crun is installed too; it fails on cgroup v1 hosts, so containers.conf selects runc"
  fi
}

# crun fails on these hosts (cgroup v1 hybrid) and the systemd cgroup manager does too:
# select runc and cgroupfs explicitly, log events to a file (no journald), and give
# containers finite ulimits.
podman_write_conf() {
  cat >"$1" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
}

# _image_rootfs DIR: the image's file tree (busybox, applet links, users, /tmp).
_image_rootfs() {
  local root=$1 a applets
  mkdir -p "$root"/{bin,etc,tmp,root,home/sandbox,proc,sys,dev} || return 1
  cp /bin/busybox "$root/bin/busybox" || return 1
  applets=" $(/bin/busybox --list | tr '\n' ' ') "
  for a in $CYN_IMAGE_APPLETS; do
    case "$applets" in
    *" $a "*) ln -s busybox "$root/bin/$a" ;;
    *) die "busybox-static has no '$a' applet" ;;
    esac
  done
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'sandbox:x:10001:10001:sandbox:/home/sandbox:/bin/sh' \
    'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'sandbox:x:10001:' 'nogroup:x:65534:' >"$root/etc/group"
  chmod 1777 "$root/tmp"
  chmod 700 "$root/root"
  chown 10001:10001 "$root/home/sandbox"
}

# image_ensure RUN_DIR: import the image when it is missing or its content changed.
# The tar is built reproducibly, so its sha256 names the content; it is kept as a label.
image_ensure() {
  local dir=$1/image hash have
  rm -rf "$dir" && mkdir -p "$dir" || return 1
  _image_rootfs "$dir/root" || return 1
  tar -C "$dir/root" --sort=name --mtime=@0 --numeric-owner --format=gnu -cf "$dir/rootfs.tar" . || return 1
  hash=$(sha256sum "$dir/rootfs.tar" | cut -d' ' -f1)
  have=$(podman image inspect --format "{{index .Labels \"$CYN_IMAGE_LABEL\"}}" "$CYN_TEST_IMAGE" 2>/dev/null || true)
  if [ "$have" = "$hash" ]; then
    info "test image $CYN_TEST_IMAGE is up to date (${hash:0:12})"
  else
    say "building test image $CYN_TEST_IMAGE (${hash:0:12}) with podman import"
    podman import --quiet \
      --change "LABEL $CYN_IMAGE_LABEL=$hash" \
      --change 'ENV PATH=/bin' \
      --change 'CMD ["/bin/sh"]' \
      "$dir/rootfs.tar" "$CYN_TEST_IMAGE" >/dev/null || return 1
  fi
  rm -rf "$dir"
}

podman_start() {
  CYN_PODMAN_SOCK=$1/podman.sock
  CYN_PODMAN_LOG=$1/podman-service.log
  say "starting the Podman API service on unix://$CYN_PODMAN_SOCK"
  # Started from the run directory: conmon drops files such as `oom` into the service's
  # working directory when a container is killed for memory.
  (cd "$1" && exec podman system service --time=0 "unix://$CYN_PODMAN_SOCK" </dev/null >"$CYN_PODMAN_LOG" 2>&1) &
  CYN_PODMAN_PID=$!
  echo "$CYN_PODMAN_PID" >"$1/podman.pid" # for reap_stale_runs, should this run be killed
  for _ in $(seq 1 300); do
    if [ "$(curl -s --max-time 2 --unix-socket "$CYN_PODMAN_SOCK" http://d/_ping 2>/dev/null)" = OK ]; then
      info "Podman API answers _ping (service pid $CYN_PODMAN_PID)"
      return 0
    fi
    if ! kill -0 "$CYN_PODMAN_PID" 2>/dev/null; then
      warn "podman system service exited; its log:"
      tail -20 "$CYN_PODMAN_LOG" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  warn "the Podman API did not answer within 30 s; its log:"
  tail -20 "$CYN_PODMAN_LOG" >&2 || true
  return 1
}

# podman_check: through the API socket (as the tests use it), the runtime must be runc
# with cgroupfs, and a container with memory/pids limits must run as user `sandbox`.
podman_check() {
  local url="unix://$CYN_PODMAN_SOCK" got
  got=$(podman --url "$url" info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}') || return 1
  if [ "$got" != "runc cgroupfs" ]; then
    warn "Podman uses '$got' (runtime, cgroup manager); the tests need 'runc cgroupfs' (crun fails here)"
    return 1
  fi
  got=$(podman --url "$url" run --rm --network none --memory 64m --pids-limit 64 --cap-drop all \
    --user sandbox "$CYN_TEST_IMAGE" id -u 2>&1) || {
    warn "a test container did not run: $got"
    return 1
  }
  if [ "$got" != 10001 ]; then
    warn "expected uid 10001 in the test container, got: $got"
    return 1
  fi
  info "runtime runc, cgroup manager cgroupfs; a limited container runs as sandbox (uid 10001)"
}

podman_stop() {
  stop_pid "$CYN_PODMAN_PID" "the Podman API service" TERM
  CYN_PODMAN_PID=
}

podman_log_tail() {
  [ -n "$CYN_PODMAN_LOG" ] && [ -s "$CYN_PODMAN_LOG" ] || return 0
  warn "tail of the Podman service log ($CYN_PODMAN_LOG):"
  tail -20 "$CYN_PODMAN_LOG" >&2 || true
}
