for f in data/*.npy; do n=$(basename $f .npy); [ -f models/$n.lmm ] && continue
learned-manifold train $f --out models/$n.lmm --steps 800 --hidden 64 --depth 2 --batch-size 256 --precision fp32 --device cpu --no-progress --overwrite > logs/$n.log 2>&1
done
echo done
