"""The built-in CNN workload: torchvision models trained or run for inference on CPU/GPU,
printing throughput lines the collector reads exactly like Graphcore's app's."""
