"""debleed's benchmarks (``debleed bench``, ``make bench``): what debleed costs, measured.

Sections, one module each: :mod:`~debleed.bench.kernels` (ns per sample per channel, offline
real-time factor), :mod:`~debleed.bench.callback` (process-callback time against the deadline,
both engines), :mod:`~debleed.bench.peer` (JACK DSP load against LSP's sidechain gate),
:mod:`~debleed.bench.latency` (impulse in, impulse out, against the reported latency; graph
round trip), :mod:`~debleed.bench.denoiser` (inference per block, providers, IO binding),
:mod:`~debleed.bench.soak` (a long run: xruns, the cycles jackd blames on debleed and on the LSP gates, memory). :mod:`~debleed.bench.report`
writes ``report.json``, ``report.md`` and PNG plots. Every number is a median over repeated runs
with min and max; nothing here asserts a time.
"""
