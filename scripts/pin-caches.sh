#!/usr/bin/env bash
# Run from the repository root (start.sh sources it; tests run it directly).
# The repository is the persistence boundary: the hub cache (and token) and the quantised-base
# cache live in .cache/ inside it, so a pod volume holding the repo holds everything. Pinned in
# .env (bwb reads it) unless already set in the environment or .env; a path start.sh wrote for
# another checkout location (the volume mounted elsewhere) is moved to this one.
pin_cache() {
  local name=$1 rel=$2
  local want="$PWD/$rel"
  if [[ -n "${!name:-}" ]]; then
    echo "==> $name is set in the environment (${!name}): kept"
    return
  fi
  if grep -q "^$name=" .env; then
    local current
    current=$(grep "^$name=" .env | tail -n 1 | cut -d= -f2-)
    if [[ "$current" == */"$rel" && "$current" != "$want" ]]; then
      grep -v "^$name=" .env > .env.tmp && mv .env.tmp .env
      echo "$name=$want" >> .env
      echo "==> $name moved with the repository: $want"
    else
      echo "==> Keeping $name=$current from .env"
    fi
    return
  fi
  echo "$name=$want" >> .env
  echo "==> $name=$want (in .env)"
}
[[ -f .env ]] || touch .env
mkdir -p .cache
pin_cache HF_HOME .cache/huggingface
pin_cache BWB_CACHE_DIR .cache/bwb/quantized
