"""Adding / copy-memory problems (Wolter et al. 2020) on a wall-clock budget, with learning curves.

The same model, data and metric as `apps/learnable_wavelet.py --experiment adding|copy`
(`dwt_keras.learnable.models.build_sequence_model`, `dwt_keras.learnable.tasks`: `adding_batch` / `copy_batch`, the
same seeds for the training stream, the validation set and the test set), but trained step by
step until `--max_steps` or the `--deadline` (UTC), whichever comes first, so that a run on a
shared CPU always ends with a measured test number. Every `--eval_every` steps it records the
validation and test metrics; the reported `test_accuracy` is the test metric of the weights with
the best validation metric (as the app's `restore_best_weights`).

Usage:
  python benchmarks/bench_learnable_sequence.py --task adding --rnn wavelet --hidden 256 \
      --compress state,reset,update --deadline 23:58 --out /tmp/lw/adding_wavelet
  python benchmarks/bench_learnable_sequence.py --task adding --rnn gru --hidden 256 --deadline 23:58 --out ...

Writes `<out>/report.json` (params, test_accuracy, curve, ...), rewritten after every evaluation.
"""

import argparse
import datetime
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("adding", "copy"), default="adding")
    parser.add_argument("--rnn", choices=("gru", "wavelet", "fastfood"), default="wavelet")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--compress", default="state,reset,update")
    parser.add_argument("--seq_len", type=int, default=150)
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--optimizer", choices=("rmsprop", "adam"), default="rmsprop")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clipnorm", type=float, default=1.0, help="0: no clipping")
    parser.add_argument("--rho", type=float, default=0.9, help="RMSprop decay (PyTorch's alpha: 0.99)")
    parser.add_argument("--epsilon", type=float, default=1e-7,
                        help="optimizer epsilon; Keras' RMSprop adds it INSIDE the square root "
                             "(sqrt(v + eps)), PyTorch's outside (sqrt(v) + 1e-8): 1e-16 matches PyTorch")
    parser.add_argument("--max_steps", type=int, default=100000)
    parser.add_argument("--deadline", default=None, help="stop training at this UTC time, HH:MM (next occurrence)")
    parser.add_argument("--eval_every", type=int, default=250)
    parser.add_argument("--n_val", type=int, default=500)
    parser.add_argument("--n_test", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jit", action="store_true", help="model.compile(jit_compile=True)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if min(args.hidden, args.batch_size, args.max_steps, args.eval_every, args.n_val, args.n_test) < 1:
        parser.error("--hidden, --batch_size, --max_steps, --eval_every, --n_val, --n_test must be >= 1.")
    return args


def _deadline_seconds(text):
    """Seconds from now until the next UTC time `HH:MM`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    hour, minute = (int(v) for v in text.split(":"))
    target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= now:
        target += datetime.timedelta(days=1)
    return (target - now).total_seconds()


def main(argv=None):
    args = _parse_args(argv)
    t_start = time.perf_counter()
    budget = _deadline_seconds(args.deadline) if args.deadline else float("inf")
    import keras
    import numpy as np
    from _timing import set_tf_threads

    set_tf_threads(args.threads)
    import types

    from dwt_keras.learnable import models, tasks
    from dwt_keras.learnable.recurrent import parse_compress

    ex = types.SimpleNamespace(**vars(tasks), **vars(models), parse_compress=parse_compress,
                               count_trainable=lambda m: int(sum(int(np.prod(v.shape)) for v in m.trainable_variables)))
    from dwt_keras.utils.io import atomic_write_json

    keras.utils.set_random_seed(args.seed)
    make_batch = ex.adding_batch if args.task == "adding" else ex.copy_batch
    # The app's seeds: training stream [seed, 0], validation [seed, 1], test [seed, 2].
    x_val, y_val = make_batch(args.n_val, args.seq_len, np.random.default_rng([args.seed, 1]))
    x_test, y_test = make_batch(args.n_test, args.seq_len, np.random.default_rng([args.seed, 2]))
    train_rng = np.random.default_rng([args.seed, 0])
    if args.task == "adding":
        output_units, return_sequences, loss = 1, False, keras.losses.MeanSquaredError()
    else:
        output_units, return_sequences = ex.COPY_CATEGORIES, True
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = ex.build_sequence_model(
        args.rnn, input_shape=x_val.shape[1:], output_units=output_units, return_sequences=return_sequences,
        hidden=args.hidden, compress=ex.parse_compress(args.compress), seed=args.seed,
    )
    kwargs = {"learning_rate": args.lr, "epsilon": args.epsilon}
    if args.clipnorm:
        kwargs["clipnorm"] = args.clipnorm
    if args.optimizer == "rmsprop":
        optimizer = keras.optimizers.RMSprop(rho=args.rho, **kwargs)
    else:
        optimizer = keras.optimizers.Adam(**kwargs)
    model.compile(optimizer=optimizer, loss=loss, jit_compile=args.jit)

    def metric(x, y):
        pred = model.predict(x, batch_size=250, verbose=0)
        if args.task == "adding":
            return ex.adding_accuracy(y, pred), float(np.mean((pred.reshape(-1) - y.reshape(-1)) ** 2))
        labels = pred.argmax(-1)
        return float(np.mean(labels[:, -ex.COPY_DIGITS:] == y[:, -ex.COPY_DIGITS:])), float(np.mean(labels == y))

    second_name = "mse" if args.task == "adding" else "all_steps_accuracy"
    report = {
        "experiment": args.task, "rnn": args.rnn, "hidden": args.hidden,
        "compress": args.compress.split(",") if args.rnn != "gru" else [],
        "params": ex.count_trainable(model), "args": vars(args), "curve": [],
        "recurrent_impl": getattr(getattr(model.layers[1], "cell", None), "resolved_recurrent_impl", lambda: None)(),
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "report.json")
    best_val, best_weights, best_step = -1.0, None, 0
    step, losses, train_seconds, first_step_seconds = 0, [], 0.0, None
    while step < args.max_steps:
        t0 = time.perf_counter()
        x, y = make_batch(args.batch_size, args.seq_len, train_rng)
        out = model.train_on_batch(x, y)
        losses.append(float(out[0] if isinstance(out, (list, tuple)) else out))
        if first_step_seconds is None:
            first_step_seconds = time.perf_counter() - t0  # tracing / XLA compilation, not timed
        else:
            train_seconds += time.perf_counter() - t0
        step += 1
        out_of_time = time.perf_counter() - t_start > budget
        if step % args.eval_every == 0 or step == args.max_steps or out_of_time:
            val, val2 = metric(x_val, y_val)
            test, test2 = metric(x_test, y_test)
            report["curve"].append({
                "step": step, "train_loss": float(np.mean(losses)), "val_accuracy": val, f"val_{second_name}": val2,
                "test_accuracy": test, f"test_{second_name}": test2, "train_seconds": train_seconds,
                "wall_seconds": time.perf_counter() - t_start,
            })
            losses = []
            if val > best_val:
                best_val, best_weights, best_step = val, model.get_weights(), step
            print(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in report["curve"][-1].items()
                                                 if k != "step"), flush=True)
            best = next(c for c in report["curve"] if c["step"] == best_step)
            report.update({
                "train_steps": step, "best_step": best_step, "best_val": best_val,
                "test_accuracy": best["test_accuracy"], f"test_{second_name}": best[f"test_{second_name}"],
                "seconds_per_step": train_seconds / max(1, step - 1), "first_step_seconds": first_step_seconds,
                "finished": False,
            })
            atomic_write_json(path, report)
        if out_of_time:
            break
    report["finished"] = True
    report["stopped_by"] = "deadline" if step < args.max_steps else "max_steps"
    model.set_weights(best_weights)
    atomic_write_json(path, report)
    print(f"{args.rnn}: params {report['params']}, steps {step}, best step {best_step}, "
          f"test_accuracy {report['test_accuracy']:.4f}", flush=True)


if __name__ == "__main__":
    main()
