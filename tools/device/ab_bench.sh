# A/B of two apr builds on the same machine: $1 $2 carry dirs, then models.
A=$1 B=$2; shift 2
for m in "$@"; do
  [ -f /tmp/models/$m.gguf ] || $B/apr synth qwen2.5-$m -o /tmp/models/$m.gguf --type q4_k_m >/dev/null
  for c in $A $B $A $B; do
    echo "== $m $c: $($c/apr bench /tmp/models/$m.gguf --device cuda -p 512 -n 128 -r 3 2>&1 | grep -E '^\| (pp|tg)' | tr '\n' ' ')"
  done
done
