"""Saliency methods behind one batched interface (:class:`~xai_bench.methods.base.Explainer`)."""
