"""Speed of the coefficient form in training: per-layer products, whole fit() epochs, and a conv.

Three parts, each written through ``_record.Recorder`` to
``benchmarks/results/coefficient_domain_<part>.json``:

* ``products``: one train step (forward, and backward to the kept values and to the layer's
  input) of each LeNet-300-100 layer as `WaveletDomainDense` with each product (``gather``,
  ``rows``, ``dense``) against the plain ``Dense`` layer, at several keep ratios and batch sizes;
  the per-layer crossovers set ``coefficient_domain.choose_product``'s thresholds.
* ``fit``: ``fit()`` epoch time of the coefficient form (automatic product) against plain
  ``fit()`` of the dense model, same run, round robin, medians (wall and process CPU time);
  with ``--projected``, also the dense model retrained with the mask held by projection.
* ``conv``: a 5x5 convolution (LeNet-5's second: 20 -> 50 channels on 12x12) against its
  coefficient-domain equivalent (patches, the transform of every patch, a sparse product).

    python benchmarks/bench_coefficient_domain.py --part products
    python benchmarks/bench_coefficient_domain.py --part fit --keeps 0.05,0.03,0.01
    python benchmarks/bench_coefficient_domain.py --part conv
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _timed(fns, repeats, warmup=3):
    """Median seconds of each ``fn()`` in `fns` (``{name: fn}``), timed round robin."""
    import numpy as np

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def _compressed_lenet(keep, basis, dense_path, seed=0):
    import keras

    from dwt_keras.compression import compress_model
    from dwt_keras.models import lenet300

    if dense_path:
        model = keras.models.load_model(dense_path)
    else:
        keras.utils.set_random_seed(seed)
        model = lenet300()
    compress_model(model, keep_ratio=keep, basis=basis)
    return model


def part_products(a):
    import keras
    import numpy as np
    import tensorflow as tf

    from dwt_keras.compression import coefficient_domain as cd

    rows = []
    for keep in [float(k) for k in a.keeps.split(",")]:
        model = _compressed_lenet(keep, a.basis, a.dense_model)
        forms = {p: cd.to_coefficient_domain(model, product=p) for p in ("gather", "rows", "dense")}
        for name in ("fc1", "fc2", "logits"):
            dense_layer = model.get_layer(name)
            n_in = int(dense_layer.kernel.shape[0])
            for bs in [int(b) for b in a.batch_sizes.split(",")]:
                x = tf.constant(np.random.default_rng(0).standard_normal((bs, n_in)), tf.float32)
                steps = {}

                def make(layer, variables, with_input):
                    @tf.function
                    def step():
                        with tf.GradientTape() as tape:
                            tape.watch(x)
                            loss = tf.reduce_sum(tf.square(layer(x)))
                        grads = tape.gradient(loss, variables + ([x] if with_input else []))
                        return [tf.reduce_sum(g) for g in grads]
                    return lambda: [t.numpy() for t in step()]

                with_input = name != "fc1"  # the first layer's input needs no gradient
                steps["plain"] = make(dense_layer, [dense_layer.kernel, dense_layer.bias], with_input)
                for p, m in forms.items():
                    layer = m.get_layer(name)
                    steps[p] = make(layer, [layer.values, layer.bias], with_input)
                t = _timed(steps, a.repeats)
                layer = forms["rows"].get_layer(name)
                rows.append({
                    "keep_ratio": keep, "layer": name, "batch_size": bs,
                    "kept": layer.n_kept, "used_rows": layer.n_rows,
                    "n_coef_in": layer.transform.n_coef_in, "units": layer.units,
                    "density_in_used_rows": layer.n_kept / (layer.n_rows * layer.units),
                    "seconds": t,
                    "ratio_to_plain": {p: t[p] / t["plain"] for p in forms},
                })
                print(f"keep {keep} {name} bs {bs}: " + " ".join(
                    f"{p} x{r:.2f}" for p, r in rows[-1]["ratio_to_plain"].items()), flush=True)
        keras.backend.clear_session()
    return {"basis": a.basis, "rows": rows}


def part_fit(a):
    import keras

    from _timing import fit_epoch_times

    from dwt_keras.compression import coefficient_domain as cd
    from dwt_keras.data import load_arrays

    s = load_arrays("mnist", data_dir=a.data_dir)
    x, y = s.x_train[: a.n_train], s.y_train[: a.n_train]

    def compiled(m):
        m.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
        return m

    out = {"basis": a.basis, "n_train": a.n_train, "batch_sizes": {}}
    projected = [float(k) for k in a.projected.split(",")] if a.projected else []
    for bs in [int(b) for b in a.batch_sizes.split(",")]:
        models = {"plain": compiled(_compressed_lenet(1.0, "identity", a.dense_model))}
        records = {}
        for keep in [float(k) for k in a.keeps.split(",")]:
            dense = _compressed_lenet(keep, a.basis, a.dense_model)
            models[f"coefficient_{keep}"] = compiled(cd.to_coefficient_domain(dense))
            records[f"coefficient_{keep}"] = cd.coefficient_domain_record(
                models[f"coefficient_{keep}"])
            if keep in projected:
                # today's retraining: the dense model with the mask held by projection
                models[f"projected_{keep}"] = compiled(dense)
        from dwt_keras.compression import constraints

        constraints.detach_state(models["plain"])  # plain fit(): no mask constraints
        res = fit_epoch_times(models, x, y, bs, a.repeats)
        for k in models:
            res[k]["layers"] = records.get(k)
        out["batch_sizes"][str(bs)] = res
        print(f"batch {bs}: " + ", ".join(f"{k}: wall x{r['wall_ratio']:.3f} cpu x{r['cpu_ratio']:.3f}"
                                          for k, r in res.items()), flush=True)
        keras.backend.clear_session()
    return out


def part_conv(a):
    """Conv 5x5, 20 -> 50 on 12x12 (LeNet-5's second conv) vs its coefficient-domain equivalent."""
    import keras
    import numpy as np
    import tensorflow as tf

    from dwt_keras.compression import compress_model
    from dwt_keras.compression import coefficient_domain as cd

    cin, cout, k, hw = 20, 50, 5, 12
    conv = keras.layers.Conv2D(cout, k)
    conv.build((None, hw, hw, cin))
    # The coefficient-domain conv is a Dense on the (cin*kh*kw) patches: the planner's
    # conv_flattened view (spatial taps fastest) is the Dense input_axis view of that length.
    patch = keras.Sequential([keras.Input((cin * k * k,)), keras.layers.Dense(cout, name="p")])
    out = {"shape": {"cin": cin, "cout": cout, "kernel": k, "input_hw": hw}, "rows": []}
    for keep in [float(v) for v in a.keeps.split(",")]:
        compress_model(patch, keep_ratio=keep, basis=a.basis, min_kernel_size=1)
        layers = {p: cd.to_coefficient_domain(patch, product=p).get_layer("p")
                  for p in ("gather", "dense")}
        for bs in [int(b) for b in a.batch_sizes.split(",")]:
            x = tf.constant(np.random.default_rng(0).random((bs, hw, hw, cin)), tf.float32)

            @tf.function
            def conv_step():
                with tf.GradientTape() as tape:
                    loss = tf.reduce_sum(tf.square(conv(x)))
                return [tf.reduce_sum(g) for g in tape.gradient(loss, [conv.kernel, conv.bias])]

            def coefficient_step(layer):
                @tf.function
                def step():
                    with tf.GradientTape() as tape:
                        p = tf.image.extract_patches(x, [1, k, k, 1], [1, 1, 1, 1], [1, 1, 1, 1],
                                                     "VALID")  # (bs, 8, 8, k*k*cin)
                        p = tf.reshape(tf.transpose(tf.reshape(p, (-1, k * k, cin)), (0, 2, 1)),
                                       (-1, cin * k * k))
                        loss = tf.reduce_sum(tf.square(layer(p)))
                    return [tf.reduce_sum(g) for g in tape.gradient(loss, [layer.values, layer.bias])]
                return lambda: [v.numpy() for v in step()]

            fns = {"conv2d": lambda: [v.numpy() for v in conv_step()]}
            fns.update({f"coefficient_{p}": coefficient_step(l) for p, l in layers.items()})
            t = _timed(fns, a.repeats)
            out["rows"].append({"keep_ratio": keep, "batch_size": bs, "seconds": t,
                                "ratio_to_conv2d": {k_: v / t["conv2d"] for k_, v in t.items()},
                                "kept": layers["dense"].n_kept,
                                "plan": layers["dense"].plan.to_dict()})
            print(f"conv keep {keep} bs {bs}: " + " ".join(
                f"{k_} x{v:.2f}" for k_, v in out["rows"][-1]["ratio_to_conv2d"].items()),
                flush=True)
        from dwt_keras.compression import constraints

        constraints.detach_state(patch)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("products", "fit", "conv"), required=True)
    p.add_argument("--basis", default="haar")
    p.add_argument("--keeps", default=None)
    p.add_argument("--batch_sizes", default="32,128")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--n_train", type=int, default=9600)
    p.add_argument("--projected", default="0.03",
                   help="fit part: keep ratios also timed as today's retraining (projection)")
    p.add_argument("--data_dir", default=os.environ.get("DWT_KERAS_DATA_DIR", "/work/shared/data"))
    p.add_argument("--dense_model", default=None,
                   help="a trained dense LeNet-300-100 .keras (default: a fresh one)")
    p.add_argument("--name", default=None, help="result file stem")
    p.add_argument("--threads", type=int, default=0,
                   help="TF intra/inter-op threads (0: TensorFlow's default; 1: the run adds "
                        "about 1 to the load average, so a quiet machine stays quiet)")
    a = p.parse_args()
    from _timing import set_tf_threads

    set_tf_threads(a.threads)
    defaults = {"products": ("0.01,0.02,0.03,0.05,0.1,0.2", 30), "fit": ("0.05,0.03,0.01", 5),
                "conv": ("0.05,0.2", 30)}
    a.keeps = a.keeps or defaults[a.part][0]
    a.repeats = a.repeats or defaults[a.part][1]

    from _record import Recorder

    rec = Recorder(a.name or f"coefficient_domain_{a.part}")
    result = {"products": part_products, "fit": part_fit, "conv": part_conv}[a.part](a)
    print(rec.write(result, seeds=[0]))


if __name__ == "__main__":
    main()
