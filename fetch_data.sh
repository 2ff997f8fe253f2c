#!/usr/bin/env bash
# Download the InteractVLM data, model zoo and datasets from the official download server
# (https://interactvlm.is.tue.mpg.de, registration and licence acceptance needed there first).
#
#   bash fetch_data.sh                      # data.zip + the three default models
#   bash fetch_data.sh damon-dataset ...    # named items, see --list
#   bash fetch_data.sh --help
#
# Compared with the original script: TLS is verified, credentials never appear on a command line, archives are
# checked for path traversal before extraction, extracted into data/ or trained_models/ of this repository (not the
# current directory) without overwriting existing files, downloads resume from <file>.part, and sha256 sums are
# checked when known. Full description: docs/fetch_data.md.
#
# Environment:
#   INTERACTVLM_USERNAME / INTERACTVLM_PASSWORD  credentials (otherwise asked for on a terminal)
#   INTERACTVLM_DOWNLOAD_URL   URL prefix to which the URL-encoded archive name is appended (mirrors, tests);
#                              must be https://
#   CURL_CA_BUNDLE             CA bundle used by curl to verify the server (read by curl itself)
#   INTERACTVLM_ROOT           repository root to install into (default: the folder holding this script)
#   INTERACTVLM_CURL_RETRIES   curl --retry count for transient errors (default 3)
#   INTERACTVLM_CONNECT_TIMEOUT  curl --connect-timeout in seconds (default 30)
set -euo pipefail

PROG=fetch_data.sh
REGISTER_URL="https://interactvlm.is.tue.mpg.de"
DEFAULT_DOWNLOAD_URL="https://download.is.tue.mpg.de/download.php?domain=interactvlm&sfile="

# ---------------------------------------------------------------------------------------------------------------------
# Catalogue: name -> archive file, destination ("data" or "models"), licence note.
# Default set (no argument): data, hcontact-damon, oafford-lemon-piad, h2dcontact.
DEFAULT_ITEMS="data hcontact-damon oafford-lemon-piad h2dcontact"
ALL_ITEMS="data hcontact-damon oafford-lemon-piad h2dcontact damon-dataset lemon-dataset piad-ocontact-dataset
pico-dataset hcontact-wScene joint-reconstruction optim-demo-data hcontact-damon-fix hcontact-damon-noParts"

MODEL_LICENCE="InteractVLM model licence (accept it at $REGISTER_URL)"

# item_info NAME -> sets ITEM_FILE, ITEM_DEST (data|models), ITEM_LICENCE; returns 1 for an unknown name.
item_info() {
  ITEM_LICENCE=$MODEL_LICENCE
  case "$1" in
    data)                   ITEM_FILE=data.zip; ITEM_DEST=data
                            ITEM_LICENCE="InteractVLM data licence; includes third-party files under their own licences (SMPL / SMPL-H / SMPL-X body models: smpl.is.tue.mpg.de, mano.is.tue.mpg.de, smpl-x.is.tue.mpg.de; SAM ViT-H weights: Apache-2.0)" ;;
    hcontact-damon)         ITEM_FILE=interactvlm-3d-hcontact-damon.zip; ITEM_DEST=models ;;
    oafford-lemon-piad)     ITEM_FILE=interactvlm-3d-oafford-lemon-piad.zip; ITEM_DEST=models ;;
    h2dcontact)             ITEM_FILE=interactvlm-2d-hcontact.zip; ITEM_DEST=models ;;
    hcontact-wScene)        ITEM_FILE=interactvlm-3d-hcontact-wScene-damon-lemon-rich.zip; ITEM_DEST=models ;;
    joint-reconstruction)   ITEM_FILE=interactvlm-3d-hcontact-ocontact.zip; ITEM_DEST=models ;;
    hcontact-damon-fix)     ITEM_FILE=interactvlm-3d-hcontact-damon-fix.zip; ITEM_DEST=models ;;
    hcontact-damon-noParts) ITEM_FILE=interactvlm-3d-hcontact-damon-noParts.zip; ITEM_DEST=models ;;
    damon-dataset)          ITEM_FILE=damon.tar.gz; ITEM_DEST=data
                            ITEM_LICENCE="DAMON dataset (DECO, ICCV 2023): its own licence, see deco.is.tue.mpg.de" ;;
    lemon-dataset)          ITEM_FILE=lemon.tar.gz; ITEM_DEST=data
                            ITEM_LICENCE="LEMON dataset (CVPR 2024): the LEMON authors' licence terms" ;;
    piad-ocontact-dataset)  ITEM_FILE=piad_ocontact_seen.tar.gz; ITEM_DEST=data
                            ITEM_LICENCE="PIAD dataset (IAG-Net, ICCV 2023), seen split: the PIAD authors' licence terms" ;;
    pico-dataset)           ITEM_FILE=pico.tar.gz; ITEM_DEST=data
                            ITEM_LICENCE="PICO dataset: its own licence, see pico.is.tue.mpg.de" ;;
    optim-demo-data)        ITEM_FILE=optim_data.zip; ITEM_DEST=data
                            ITEM_LICENCE="InteractVLM data licence (example inputs for joint human-object fitting)" ;;
    *) return 1 ;;
  esac
}

# Known sha256 sums, one "FILE HASH" pair per line. The server publishes none, so the table is empty and the computed
# hash is printed instead. To pin a file, add a line such as
#   data.zip 0123...cdef
# (from `sha256sum data.zip` on a trusted copy), or pass --sha256 FILE=HASH, or put `sha256sum` output lines in
# checksums.sha256 at the repository root.
KNOWN_SHA256="
"

# ---------------------------------------------------------------------------------------------------------------------
say()  { printf '%s: %s\n' "$PROG" "$*" >&2; }
die()  { local code=$1; shift; say "error: $*"; exit "$code"; }

usage() {
  cat <<EOF
Usage: bash fetch_data.sh [options] [NAME ...]

Downloads InteractVLM archives from the official server and extracts them into this repository:
data and datasets into data/, models into trained_models/. With no NAME: data, hcontact-damon,
oafford-lemon-piad and h2dcontact (data.zip + the three default models).

Options:
  --list             print the names, archive files, target folders and licence notes, then exit
  --force            overwrite existing files that differ from the archive's (default: refuse)
  --keep-archive     keep the downloaded archive after a successful extraction
  --sha256 FILE=HASH expected sha256 of an archive (repeatable); also read from checksums.sha256
  -h, --help         this help

Credentials: INTERACTVLM_USERNAME / INTERACTVLM_PASSWORD, or asked for on a terminal
(register and accept the licence at $REGISTER_URL).
An archive already present as data/<file> or trained_models/<file> (e.g. downloaded in a browser) is
used as it is, without credentials. Partial downloads (<file>.part) are resumed.
Other variables: INTERACTVLM_DOWNLOAD_URL, CURL_CA_BUNDLE, INTERACTVLM_ROOT (see docs/fetch_data.md).
EOF
}

list_items() {
  local name
  printf '%-24s %-54s %-16s %s\n' NAME FILE TARGET LICENCE
  for name in $ALL_ITEMS; do
    item_info "$name"
    printf '%-24s %-54s %-16s %s\n' "$name" "$ITEM_FILE" "$(dest_name "$ITEM_DEST")/" "$ITEM_LICENCE"
  done
  printf '\nDefault (no NAME): %s\n' "$DEFAULT_ITEMS"
  printf 'All archives need an account at %s and acceptance of the licences above.\n' "$REGISTER_URL"
}

dest_name() { if [[ $1 == models ]]; then echo trained_models; else echo data; fi; }

# Percent-encode every byte outside the RFC 3986 unreserved set (works byte-wise on UTF-8).
urlencode() {
  local LC_ALL=C s=$1 out="" c i v hex
  for (( i = 0; i < ${#s}; i++ )); do
    c=${s:i:1}
    case "$c" in
      [a-zA-Z0-9.~_-]) out+=$c ;;
      *) printf -v v '%d' "'$c"; printf -v hex '%%%02X' $(( v & 255 )); out+=$hex ;;
    esac
  done
  printf '%s' "$out"
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum -- "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 -- "$1" | cut -d' ' -f1
  else openssl dgst -sha256 -r -- "$1" | cut -d' ' -f1
  fi
}

file_size() { wc -c <"$1" | tr -d ' '; }

# First bytes of a file as hex (no od -A differences between platforms).
magic_hex() { head -c 4 -- "$1" | od -An -tx1 | tr -d ' \n'; }

# archive_magic_ok FILE NAME: does FILE start like the archive type implied by NAME?
archive_magic_ok() {
  local m
  m=$(magic_hex "$1")
  case "$2" in
    *.zip)            [[ $m == 504b0304* || $m == 504b0506* ]] ;;
    *.tar.gz|*.tgz)   [[ $m == 1f8b* ]] ;;
    *)                return 0 ;;
  esac
}

looks_like_html() {
  local head
  head=$(head -c 512 -- "$1" | tr -d '\0' | tr '[:upper:]' '[:lower:]')
  [[ $head == *"<html"* || $head == *"<!doctype"* || $head == *"<form"* || $head == *"<body"* ]]
}

# ---------------------------------------------------------------------------------------------------------------------
# Temporary files and clean-up.
TMP_PATHS=()
PENDING=()   # (chunk headers part offset file) while a download is running, for the interrupt handler

register_tmp() { TMP_PATHS+=("$1"); }

cleanup() {
  local p
  if (( ${#PENDING[@]} == 5 )); then
    merge_chunk "${PENDING[@]}" 0 || rm -f -- "${PENDING[0]}"
    PENDING=()
  fi
  for p in ${TMP_PATHS[@]+"${TMP_PATHS[@]}"}; do
    [[ -e $p || -L $p ]] && rm -rf -- "$p"
  done
  return 0
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# ---------------------------------------------------------------------------------------------------------------------
# Options.
FORCE=0
KEEP_ARCHIVE=0
USER_SHA256=""      # lines "FILE HASH"
ITEMS=()

while (( $# > 0 )); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --list) LIST_ONLY=1 ;;
    --force) FORCE=1 ;;
    --keep-archive) KEEP_ARCHIVE=1 ;;
    --sha256|--sha256=*)
      if [[ $1 == --sha256=* ]]; then arg=${1#--sha256=}; else
        (( $# >= 2 )) || die 2 "--sha256 needs FILE=HASH"; shift; arg=$1; fi
      [[ $arg == *=* ]] || die 2 "--sha256 needs FILE=HASH, got '$arg'"
      hash=${arg#*=}; hash=$(printf '%s' "$hash" | tr '[:upper:]' '[:lower:]')
      [[ $hash =~ ^[0-9a-f]{64}$ ]] || die 2 "--sha256 $arg: not a 64-digit hex sha256"
      USER_SHA256+="${arg%%=*} $hash"$'\n' ;;
    --) shift; while (( $# > 0 )); do ITEMS+=("$1"); shift; done; break ;;
    -*) die 2 "unknown option '$1' (see --help)" ;;
    *) ITEMS+=("$1") ;;
  esac
  shift
done

if [[ ${LIST_ONLY:-0} == 1 ]]; then list_items; exit 0; fi

if (( ${#ITEMS[@]} == 0 )); then
  # shellcheck disable=SC2206  # word splitting of the fixed default list is intended
  ITEMS=($DEFAULT_ITEMS)
fi
for name in "${ITEMS[@]}"; do
  item_info "$name" || die 2 "unknown name '$name'; known names: $(printf '%s' "$ALL_ITEMS" | tr '\n' ' ') (see --list)"
done

for tool in curl unzip gzip od paste xargs; do
  command -v "$tool" >/dev/null 2>&1 || die 1 "'$tool' is required but not installed"
done
# GNU tar is needed for its --quoting-style listing (macOS: install gnu-tar, which provides gtar).
TAR=tar
if ! tar --version 2>/dev/null | grep -q 'GNU tar'; then
  if command -v gtar >/dev/null 2>&1; then TAR=gtar; else TAR=""; fi
fi

# Repository root: from the script's own location, never the current directory.
if [[ -n ${INTERACTVLM_ROOT:-} ]]; then
  ROOT=$INTERACTVLM_ROOT
else
  ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
fi
[[ -d $ROOT ]] || die 1 "repository root '$ROOT' does not exist"
ROOT=$(cd -- "$ROOT" && pwd -P)

BASE_URL=${INTERACTVLM_DOWNLOAD_URL:-$DEFAULT_DOWNLOAD_URL}
case "$BASE_URL" in
  https://*) ;;
  *) die 2 "INTERACTVLM_DOWNLOAD_URL must start with https:// (credentials are sent to it)" ;;
esac
SERVER_HOST=${BASE_URL#https://}; SERVER_HOST=${SERVER_HOST%%/*}; SERVER_HOST=${SERVER_HOST%%\?*}

# ---------------------------------------------------------------------------------------------------------------------
# Checksums: --sha256 first, then checksums.sha256, then the built-in table.
expected_sha256() {
  local file=$1 f h line
  while read -r f h; do
    [[ -n $f && $f == "$file" ]] && { printf '%s' "$h"; return 0; }
  done <<<"$USER_SHA256"
  if [[ -f $ROOT/checksums.sha256 ]]; then
    while read -r line || [[ -n $line ]]; do
      [[ -z $line || $line == \#* ]] && continue
      h=${line%%[[:space:]]*}; f=${line#"$h"}; f=${f#"${f%%[![:space:]]*}"}; f=${f#\*}
      [[ $f == "$file" ]] && { printf '%s' "$h" | tr '[:upper:]' '[:lower:]'; return 0; }
    done <"$ROOT/checksums.sha256"
  fi
  while read -r f h; do
    [[ -n $f && $f == "$file" ]] && { printf '%s' "$h"; return 0; }
  done <<<"$KNOWN_SHA256"
  return 1
}

verify_checksum() {  # ARCHIVE FILE
  local archive=$1 file=$2 want got
  got=$(sha256_of "$archive")
  if want=$(expected_sha256 "$file"); then
    if [[ $got != "$want" ]]; then
      mv -f -- "$archive" "$archive.bad"
      die 1 "sha256 mismatch for $file: expected $want, got $got; the file was moved to $archive.bad (nothing extracted); delete it and run again"
    fi
    say "sha256 OK for $file"
  else
    say "sha256 of $file: $got (no known checksum; pin it with --sha256 $file=$got or checksums.sha256)"
  fi
}

# ---------------------------------------------------------------------------------------------------------------------
# Credentials: read once, kept in shell variables only, and removed from the environment of child processes.
CRED_USER=""; CRED_PASS=""; HAVE_CREDS=0

get_credentials() {
  (( HAVE_CREDS )) && return 0
  CRED_USER=${INTERACTVLM_USERNAME:-}
  CRED_PASS=${INTERACTVLM_PASSWORD:-}
  if [[ -z $CRED_USER || -z $CRED_PASS ]]; then
    if [[ -t 0 ]]; then
      say "credentials of your account at $REGISTER_URL"
      if [[ -z $CRED_USER ]]; then read -r -p "Username (email): " CRED_USER; fi
      if [[ -z $CRED_PASS ]]; then read -r -s -p "Password: " CRED_PASS; echo >&2; fi
    else
      die 2 "no credentials: set INTERACTVLM_USERNAME and INTERACTVLM_PASSWORD, or run this script in a terminal to be asked (account: $REGISTER_URL)"
    fi
  fi
  [[ -n $CRED_USER && -n $CRED_PASS ]] || die 2 "empty username or password"
  unset INTERACTVLM_USERNAME INTERACTVLM_PASSWORD
  HAVE_CREDS=1
}

post_body() { printf 'username=%s&password=%s' "$(urlencode "$CRED_USER")" "$(urlencode "$CRED_PASS")"; }

# ---------------------------------------------------------------------------------------------------------------------
# Download with resume. The server wants a POST, and curl's -C/--range mean "resume an upload" for a POST, so the
# range is asked for with an explicit Range header, the response goes to <file>.part.new and is appended to
# <file>.part (206 Partial Content) or replaces it (200: the server ignored the range).

# Headers of the final response (after redirects) in HEADERS-FILE: sets RESP_CODE and RESP_RANGE (Content-Range).
parse_headers() {
  local line key
  RESP_CODE=""; RESP_RANGE=""
  [[ -f $1 ]] || return 0
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    case "$line" in
      HTTP/*) RESP_CODE=${line#* }; RESP_CODE=${RESP_CODE%% *}; RESP_RANGE="" ;;
      *:*) key=$(printf '%s' "${line%%:*}" | tr '[:upper:]' '[:lower:]')
           if [[ $key == content-range ]]; then RESP_RANGE=${line#*:}; RESP_RANGE=${RESP_RANGE# }; fi ;;
    esac
  done <"$1"
}

# merge_chunk CHUNK HEADERS PART OFFSET FILE COMPLETE(0|1): fold a range response, complete or interrupted, into PART.
# Returns 2 when PART had to be discarded (restart from byte 0), 3 when the server sent something that is not the
# start of a FILE archive (CHUNK is then left in place for the caller and PART is untouched), 1 on a write error.
merge_chunk() {
  local chunk=$1 hdr=$2 part=$3 offset=$4 file=$5 complete=$6 start total
  [[ -f $chunk ]] || return 0
  parse_headers "$hdr"
  if [[ $RESP_CODE == 206 ]]; then
    start=${RESP_RANGE#bytes }; start=${start%%-*}; total=${RESP_RANGE##*/}
    if [[ $start != "$offset" ]]; then
      say "server resumed at byte '${start:-?}' instead of $offset: restarting this file"
      rm -f -- "$part" "$chunk"
      return 2
    fi
    cat -- "$chunk" >>"$part" || return 1
    rm -f -- "$chunk"
    if (( complete )) && [[ $total =~ ^[0-9]+$ ]] && [[ $(file_size "$part") != "$total" ]]; then
      say "resumed $file has $(file_size "$part") bytes, the server announced $total: restarting this file"
      rm -f -- "$part"
      return 2
    fi
  elif [[ $RESP_CODE == 2* ]]; then
    # A response from byte 0 (no range asked, or the server ignored it).
    if ! archive_magic_ok "$chunk" "$file"; then
      if (( complete )); then return 3; fi
      rm -f -- "$chunk"
    elif (( complete )) || [[ ! -f $part ]] || (( $(file_size "$chunk") >= $(file_size "$part") )); then
      # complete: it is the whole file; interrupted: keep whichever holds more of it
      mv -f -- "$chunk" "$part" || return 1
    fi
  fi
  rm -f -- "$chunk"
}

unreachable_msg() {
  printf 'cannot reach %s: check your network/proxy (curl exit %s); files can also be downloaded in a browser from %s and placed in %s/, then run this script again' \
    "$SERVER_HOST" "$1" "$REGISTER_URL" "$2"
}

download() {  # FILE ARCHIVE-PATH
  local file=$1 archive=$2
  local part="$archive.part" chunk="$archive.part.new" hdr url rc mrc code offset before attempt=0 max_attempts=5
  local retries=${INTERACTVLM_CURL_RETRIES:-3} ctimeout=${INTERACTVLM_CONNECT_TIMEOUT:-30} dest_dir
  local -a range_args progress_args
  dest_dir=$(dirname -- "$archive")
  url="$BASE_URL$(urlencode "$file")"
  hdr=$(mktemp "${TMPDIR:-/tmp}/fetch_data.hdr.XXXXXX"); register_tmp "$hdr"
  if [[ -t 2 ]]; then progress_args=(--progress-bar); else progress_args=(--silent --show-error); fi
  get_credentials

  while :; do
    attempt=$(( attempt + 1 ))
    offset=0
    if [[ -f $part ]]; then
      offset=$(file_size "$part")
      if (( offset > 0 )) && ! archive_magic_ok "$part" "$file"; then
        say "discarding $part (not the start of a $file archive)"
        rm -f -- "$part"; offset=0
      fi
    fi
    range_args=()
    if (( offset > 0 )); then
      say "resuming $file from byte $offset"
      range_args=(-H "Range: bytes=${offset}-")
    else
      say "downloading $file"
    fi
    rm -f -- "$chunk"
    : >"$hdr"
    PENDING=("$chunk" "$hdr" "$part" "$offset" "$file")
    rc=0
    # -q ignores ~/.curlrc (which could hold --insecure); the POST body (credentials) comes from stdin.
    code=$(post_body | curl -q --fail --location --proto =https --proto-redir =https \
      --retry "$retries" --retry-delay 2 --connect-timeout "$ctimeout" \
      "${progress_args[@]}" ${range_args[@]+"${range_args[@]}"} \
      --dump-header "$hdr" --output "$chunk" --write-out '%{http_code}' \
      --data-binary @- -- "$url") || rc=$?
    before=$( [[ -f $part ]] && file_size "$part" || echo 0 )
    mrc=0; merge_chunk "$chunk" "$hdr" "$part" "$offset" "$file" "$(( rc == 0 ))" || mrc=$?
    PENDING=()
    case $mrc in
      0) ;;
      2) (( attempt < max_attempts )) && continue
         die 1 "could not resume $file; run the script again" ;;
      3) if looks_like_html "$chunk"; then
           rm -f -- "$chunk"
           die 3 "the server sent a web page instead of $file: wrong username/password, or the licence is not accepted at $REGISTER_URL"
         fi
         mv -f -- "$chunk" "$archive.bad"
         die 1 "the server sent something that is not a ${file##*.} archive for $file (kept as $archive.bad)" ;;
      *) die 1 "could not write $part (disk full?)" ;;
    esac
    local now
    now=$( [[ -f $part ]] && file_size "$part" || echo 0 )

    if (( rc == 22 )) && [[ $code == 416 ]] && (( offset > 0 )); then
      # Range not satisfiable: either .part is already complete or it is longer than the file.
      local total
      parse_headers "$hdr"; total=${RESP_RANGE##*/}
      if [[ $total == "$offset" ]]; then rc=0; else
        say "server refused to resume $file (HTTP 416): restarting it"; rm -f -- "$part"
        (( attempt < max_attempts )) && continue
      fi
    fi

    case $rc in
      0) break ;;
      22)
        case $code in
          401|403) die 3 "the server refused the credentials for $file (HTTP $code): check INTERACTVLM_USERNAME/INTERACTVLM_PASSWORD and that you accepted the licence at $REGISTER_URL" ;;
          404) die 1 "$file not found on the server (HTTP 404)" ;;
          *) die 1 "download of $file failed: the server answered HTTP $code" ;;
        esac ;;
      6|7|35) die 4 "$(unreachable_msg "$rc" "$dest_dir")" ;;
      28|18|56|92|16)
        if (( now > before || now > offset )) && (( attempt < max_attempts )); then
          say "transfer of $file interrupted (curl exit $rc) at byte $now: resuming"
          continue
        fi
        if (( rc == 28 && now == 0 )); then die 4 "$(unreachable_msg "$rc" "$dest_dir")"; fi
        die 1 "download of $file interrupted (curl exit $rc); run the script again to resume from $part" ;;
      51|58|60|77|83|90|91)
        die 4 "TLS verification of $SERVER_HOST failed (curl exit $rc). A proxy that intercepts HTTPS needs its CA in CURL_CA_BUNDLE; this script never disables verification. Files can also be downloaded in a browser from $REGISTER_URL and placed in $dest_dir/" ;;
      *) die 1 "download of $file failed (curl exit $rc)" ;;
    esac
  done

  [[ -s $part ]] || die 1 "the server sent an empty file for $file"
  if ! archive_magic_ok "$part" "$file"; then
    if looks_like_html "$part"; then
      rm -f -- "$part"
      die 3 "the server sent a web page instead of $file: wrong username/password, or the licence is not accepted at $REGISTER_URL"
    fi
    mv -f -- "$part" "$archive.bad"
    die 1 "$file downloaded but is not a ${file##*.} archive (kept as $archive.bad)"
  fi
  mv -f -- "$part" "$archive"
  say "downloaded $archive ($(file_size "$archive") bytes)"
}

# ---------------------------------------------------------------------------------------------------------------------
# Archive safety: list members (and symlink/hardlink targets) before extracting anything. Both formats are turned
# into lines "TYPE<tab>NAME<tab>LINK-TARGET" (TYPE f, d, l = symlink, h = hard link, anything else = refused) and
# checked by one awk program (fast on archives with 100 000+ members).
# shellcheck disable=SC2016  # awk program: $1... are awk fields
CHECK_MEMBERS_AWK='
function norm(p) { while (sub(/^\.\//, "", p)) {} gsub(/\/(\.\/)+/, "/", p); gsub(/\/+/, "/", p); sub(/\/$/, "", p); return p }
function has_dotdot(p) { return ("/" p "/") ~ /\/\.\.\// }
function escapes(dir, target,   path, n, c, i, depth) {   # does DIR/TARGET climb above the archive root?
  path = (dir == "" ? target : dir "/" target)
  n = split(path, c, "/"); depth = 0
  for (i = 1; i <= n; i++) {
    if (c[i] == "" || c[i] == ".") continue
    if (c[i] == "..") { depth--; if (depth < 0) return 1 } else depth++
  }
  return 0
}
function fail(msg) { print msg; bad = 1; exit 1 }
BEGIN { FS = "\t" }
{
  type = $1; name = $2; target = $3
  if (type !~ /^[fdlh]$/) fail("special file (device, fifo, ...) or unreadable entry " name)
  if (name ~ /^\// || name ~ /^[A-Za-z]:/) fail("absolute path " name)
  if (has_dotdot(name)) fail("\"..\" in member name " name)
  n = norm(name); names[++count] = n
  if (type == "l") {
    if (target ~ /^\//) fail("symlink " name " points to the absolute path " target)
    dir = n; if (!sub(/\/[^\/]*$/, "", dir)) dir = ""
    if (escapes(dir, target)) fail("symlink " name " -> " target " points outside the archive")
    link[n] = 1
  } else if (type == "h") {
    if (target ~ /^\// || has_dotdot(target)) fail("hard link " name " -> " target " points outside the archive")
    hard[n] = norm(target)
  }
}
END {
  if (bad) exit 1
  for (j = 1; j <= count; j++) {   # nothing may be written through a symlink of the same archive
    k = split(names[j], c, "/"); pre = ""
    for (i = 1; i < k; i++) {
      pre = (i == 1 ? c[1] : pre "/" c[i])
      if (pre in link) { print "member " names[j] " lies under the symlink " pre; exit 1 }
    }
  }
  for (h in hard) {   # nor may a hard link reach its target through one
    k = split(hard[h], c, "/"); pre = ""
    for (i = 1; i <= k; i++) {
      pre = (i == 1 ? c[1] : pre "/" c[i])
      if (pre in link) { print "hard link " h " -> " hard[h] " goes through the symlink " pre; exit 1 }
    }
  }
}'

# GNU tar verbose listing with C-quoted names ("name" -> "target", "name" link to "target") -> member lines.
# shellcheck disable=SC2016
TAR_LIST_AWK='
{
  t = substr($0, 1, 1); if (t == "-") t = "f"
  if (!match($0, /"([^"\\]|\\.)*"/)) { print "?\t" $0; next }
  name = substr($0, RSTART + 1, RLENGTH - 2); rest = substr($0, RSTART + RLENGTH); target = ""
  if ((t == "l" || t == "h") && match(rest, /"([^"\\]|\\.)*"/)) target = substr(rest, RSTART + 1, RLENGTH - 2)
  print t "\t" name "\t" target
}'

check_members() {  # ARCHIVE WHEN < member lines
  local msg
  if ! msg=$(awk "$CHECK_MEMBERS_AWK"); then
    die 5 "unsafe archive $1: ${msg:-cannot check its members}; nothing $2"
  fi
}

# Escape unzip wildcards so that `unzip -p ARCHIVE NAME` matches NAME literally.
unzip_literal() { local s=$1; s=${s//\[/[[]}; s=${s//\*/[*]}; s=${s//\?/[?]}; printf '%s' "$s"; }

check_zip() {  # ARCHIVE
  local archive=$1 names links line name target
  names=$(unzip -Z1 -- "$archive" 2>/dev/null) || die 1 "$archive is not a readable zip archive (kept; delete it and run again)"
  # Symlinks: long-listing lines that start with 'l' (permissions); the name follows the 8th field, the target is the
  # member's content.
  links=""
  while IFS= read -r line; do
    [[ $line == l?????????\ * ]] || continue
    name=$(printf '%s\n' "$line" | awk '{ for (i = 1; i <= 8; i++) { sub(/^[^ ]+ +/, "") } print }')
    target=$(unzip -p -- "$archive" "$(unzip_literal "$name")" 2>/dev/null) || target="/unreadable"
    links+="l"$'\t'"$name"$'\t'"$target"$'\n'
  done < <(unzip -Z -- "$archive" 2>/dev/null | grep '^l' || true)
  check_members "$archive" extracted < <(printf '%s\n' "$names" | awk '{ print "f\t" $0 }'; printf '%s' "$links")
}

check_tar() {  # ARCHIVE
  local archive=$1 listing
  [[ -n $TAR ]] || die 1 "GNU tar is needed to check and extract $archive (install GNU tar / gtar)"
  # -P (listing only): show names and link targets verbatim instead of silently stripping '/' and '../'
  listing=$("$TAR" -P --quoting-style=c -tvzf "$archive" 2>/dev/null) || die 1 "$archive is not a readable tar.gz archive (kept; delete it and run again)"
  check_members "$archive" extracted < <(printf '%s\n' "$listing" | awk "$TAR_LIST_AWK")
}

# link_resolves_inside ROOT LINK: does the symlink LINK (under the physical folder ROOT) resolve inside ROOT when
# followed through the real tree, every intermediate step included? Reading only a link's text is not enough: with
# d/l1 -> .. and u -> d/l1/.., the text "d/l1/.." looks like "d", but the kernel follows l1 first and lands above
# ROOT. Links met on the way are expanded (at most 40, as the kernel does); a missing component ends the walk, and
# what follows it may then not climb back ("..") since that would depend on what is created there later.
link_resolves_inside() {
  local root=$1 link=$2 cur rest comp target hops=0
  target=$(readlink -- "$link") || return 1
  [[ $target == /* ]] && return 1
  cur=$(cd -P -- "$(dirname -- "$link")" 2>/dev/null && pwd -P) || return 1
  rest=$target
  while [[ -n $rest ]]; do
    comp=${rest%%/*}
    if [[ $rest == */* ]]; then rest=${rest#*/}; else rest=""; fi
    case $comp in
      ''|.) continue ;;
      ..) [[ $cur == "$root" ]] && return 1
          cur=${cur%/*} ;;
      *)
        if [[ -L $cur/$comp ]]; then
          (( ++hops <= 40 )) || return 1
          target=$(readlink -- "$cur/$comp") || return 1
          [[ $target == /* ]] && return 1
          rest=$target${rest:+/$rest}
        elif [[ -d $cur/$comp ]]; then
          cur=$cur/$comp
        elif [[ -e $cur/$comp ]]; then
          [[ -z ${rest//\//} ]] || return 1   # a file in the middle of a path resolves nowhere: refuse
          cur=$cur/$comp
        else
          [[ "/$rest/" != */../* ]] || return 1
          cur=$cur/$comp; rest=""
        fi ;;
    esac
    [[ $cur == "$root" || $cur == "$root"/* ]] || return 1
  done
  [[ $cur == "$root" || $cur == "$root"/* ]]
}

# After extraction into the private folder: no special files, and every symlink must resolve inside the tree that
# will be installed (DIR: the extracted folder after the data/ or trained_models/ wrapper is stripped).
check_extracted() {  # DIR ARCHIVE
  local dir=$1 archive=$2 link bad root
  bad=$(find "$dir" ! -type f ! -type d ! -type l -print -quit)
  [[ -z $bad ]] || die 5 "unsafe archive $archive: special file '${bad#"$dir"/}'; nothing installed"
  check_members "$archive" installed < <(
    find "$dir" -type l -print0 | while IFS= read -r -d '' link; do
      printf 'l\t%s\t%s\n' "${link#"$dir"/}" "$(readlink -- "$link")"
    done)
  root=$(cd -P -- "$dir" && pwd -P)
  while IFS= read -r -d '' link; do
    link_resolves_inside "$root" "$link" ||
      die 5 "unsafe archive $archive: symlink '${link#"$dir"/}' -> '$(readlink -- "$link")' resolves outside the archive when followed through its other links; nothing installed"
  done < <(find "$dir" -type l -print0)
}

# ---------------------------------------------------------------------------------------------------------------------
# Installation: merge the extracted tree into the destination without overwriting differing files (unless --force).
CONFLICTS=()        # existing files whose content differs (overwritten with --force)
HARD_CONFLICTS=()   # a file where a folder is needed or the reverse (always refused)
PAIR_REL=(); PAIR_SRC=(); PAIR_DST=()   # regular files present on both sides, compared in bulk afterwards

# Walk only the subtrees that already exist in DST. A symlink inside DST is never followed: where the archive has a
# folder it is a hard conflict (a link could lead anywhere, e.g. out of the install root), where it has a file or a
# link it is a differing entry. (DST itself may be a link: data/ -> /big/disk/data is the user's choice.)
collect_overlap() {  # SRC DST [REL]
  local src=$1 dst=$2 rel=${3:-} entry name path target
  for entry in "$src"/* "$src"/.[!.]* "$src"/..?*; do
    [[ -e $entry || -L $entry ]] || continue
    name=${entry##*/}; path=${rel:+$rel/}$name; target="$dst/$name"
    [[ -e $target || -L $target ]] || continue
    if [[ -d $entry && ! -L $entry ]]; then
      if [[ -d $target && ! -L $target ]]; then collect_overlap "$entry" "$target" "$path"
      else HARD_CONFLICTS+=("$path"); fi
    elif [[ -L $entry ]]; then
      if [[ -L $target ]]; then
        [[ $(readlink -- "$entry") == "$(readlink -- "$target")" ]] || CONFLICTS+=("$path")
      elif [[ -d $target ]]; then HARD_CONFLICTS+=("$path")
      else CONFLICTS+=("$path")
      fi
    elif [[ -L $target ]]; then   # a link where the archive has a file: replaced only with --force, never read
      CONFLICTS+=("$path")
    elif [[ -d $target ]]; then
      HARD_CONFLICTS+=("$path")
    else
      PAIR_REL+=("$path"); PAIR_SRC+=("$entry"); PAIR_DST+=("$target")
    fi
  done
}

# sha256 of each NUL-separated path on stdin, one hash per line, in input order (few processes for many files).
hash_list() {
  if command -v sha256sum >/dev/null 2>&1; then xargs -0 sha256sum --
  else xargs -0 shasum -a 256 --
  fi | sed 's/^\\//' | cut -c1-64
}

find_conflicts() {  # SRC DST
  local i a b
  PAIR_REL=(); PAIR_SRC=(); PAIR_DST=()
  collect_overlap "$1" "$2"
  (( ${#PAIR_REL[@]} > 0 )) || return 0
  a=$(printf '%s\0' "${PAIR_SRC[@]}" | hash_list) || die 1 "cannot read the extracted files"
  b=$(printf '%s\0' "${PAIR_DST[@]}" | hash_list) || die 1 "cannot read the existing files in $2"
  while read -r i; do
    CONFLICTS+=("${PAIR_REL[i - 1]}")
  done < <(paste -d' ' <(printf '%s\n' "$a") <(printf '%s\n' "$b") | awk '$1 != $2 { print NR }')
}

# Move SRC's content into DST. Without --force every existing target was found identical by find_conflicts and is
# left alone; with --force existing files and links are replaced (never folders: those are HARD_CONFLICTS). Only real
# folders are descended into, never a symlink of DST (collect_overlap reported those as hard conflicts).
merge_tree() {  # SRC DST (DST is a directory; only the top one may be reached through a symlink)
  local src=$1 dst=$2 entry name
  for entry in "$src"/* "$src"/.[!.]* "$src"/..?*; do
    [[ -e $entry || -L $entry ]] || continue
    name=${entry##*/}
    if [[ -d $entry && ! -L $entry && -L $dst/$name ]]; then
      die 1 "internal error: would write through the symlink $dst/$name"
    elif [[ -d $entry && ! -L $entry && -d $dst/$name ]]; then
      merge_tree "$entry" "$dst/$name"
    elif [[ -e $dst/$name || -L $dst/$name ]]; then
      (( FORCE )) || continue
      [[ -d $dst/$name && ! -L $dst/$name ]] && die 1 "internal error: would replace the folder $dst/$name"
      rm -f -- "${dst:?}/$name"
      mv -- "$entry" "$dst/$name"
    else
      mv -- "$entry" "$dst/$name"
    fi
  done
}

install_archive() {  # ARCHIVE FILE DEST-DIR WRAPPER-NAME
  local archive=$1 file=$2 dest=$3 wrapper=$4 tmp src entries n
  case "$file" in
    *.zip) check_zip "$archive" ;;
    *.tar.gz|*.tgz) check_tar "$archive" ;;
    *) die 1 "unknown archive type: $file" ;;
  esac
  tmp=$(mktemp -d "$dest/.fetch_data.XXXXXX"); register_tmp "$tmp"
  say "extracting $file into $dest/"
  case "$file" in
    *.zip) unzip -q -o -- "$archive" -d "$tmp" || die 1 "extraction of $archive failed (archive kept; delete it to download again)" ;;
    *) "$TAR" --no-same-owner -xzf "$archive" -C "$tmp" || die 1 "extraction of $archive failed (archive kept; delete it to download again)" ;;
  esac
  # Archives made to be unpacked in the repository root carry a top-level data/ or trained_models/: strip it.
  src=$tmp
  entries=$(find "$tmp" -mindepth 1 -maxdepth 1 | wc -l | tr -d ' ')
  if [[ $entries == 1 && -d $tmp/$wrapper && ! -L $tmp/$wrapper ]]; then src=$tmp/$wrapper; fi
  check_extracted "$src" "$archive"   # links are judged in the tree that is installed, wrapper stripped
  n=$(find "$src" -mindepth 1 -maxdepth 1 | wc -l | tr -d ' ')
  (( n > 0 )) || die 1 "$archive is empty"

  CONFLICTS=(); HARD_CONFLICTS=()
  find_conflicts "$src" "$dest"
  if (( ${#HARD_CONFLICTS[@]} > 0 )); then
    die 6 "cannot install $file: ${#HARD_CONFLICTS[@]} path(s) in $dest/ are a file where the archive has a folder, or the reverse:
$(printf '  %s\n' "${HARD_CONFLICTS[@]:0:10}")
Move them away and run again (--force does not replace folders). The archive is kept as $archive."
  fi
  if (( ${#CONFLICTS[@]} > 0 )); then
    if (( FORCE )); then
      say "--force: overwriting ${#CONFLICTS[@]} existing path(s) in $dest/ (first: ${CONFLICTS[0]})"
    else
      local shown
      shown=$(printf '  %s\n' "${CONFLICTS[@]:0:10}")
      die 6 "refusing to overwrite ${#CONFLICTS[@]} existing file(s) in $dest/ that differ from $file:
$shown
Move them away, or run again with --force to overwrite them. The archive is kept as $archive."
    fi
  fi
  merge_tree "$src" "$dest"
  rm -rf -- "$tmp"
  say "installed $file into $dest/"
}

# ---------------------------------------------------------------------------------------------------------------------
# Main. Credentials are asked for once, up front, if any archive has to be downloaded.
for name in "${ITEMS[@]}"; do
  item_info "$name"
  [[ -f $ROOT/$(dest_name "$ITEM_DEST")/$ITEM_FILE ]] || { get_credentials; break; }
done
for name in "${ITEMS[@]}"; do
  item_info "$name"
  dest="$ROOT/$(dest_name "$ITEM_DEST")"
  mkdir -p -- "$dest"
  archive="$dest/$ITEM_FILE"
  say "$name: $ITEM_FILE -> $dest/  [licence: $ITEM_LICENCE]"
  if [[ -f $archive ]]; then
    say "using the archive already present at $archive"
  else
    download "$ITEM_FILE" "$archive"
  fi
  verify_checksum "$archive" "$ITEM_FILE"
  install_archive "$archive" "$ITEM_FILE" "$dest" "$(dest_name "$ITEM_DEST")"
  if (( KEEP_ARCHIVE )); then
    say "keeping $archive (--keep-archive)"
  else
    rm -f -- "$archive"
  fi
done
say "done: ${ITEMS[*]}"
