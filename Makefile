# debleed: `make demo` and `make test` set up a fresh Debian machine (as root, or with sudo).
VENV    ?= .venv
PY      := $(VENV)/bin/python
SUDO    := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_RUNTIME := jackd2 libportaudio2 libsndfile1 hydrogen-drumkits avldrums.lv2-soundfont sonic-pi-samples
APT_BENCH   := lsp-plugins-jack
PYTEST_ARGS ?=

.PHONY: all system system-bench venv demo test bench train clean

all: test

define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

system:
	$(call apt_install,$(APT_RUNTIME))

system-bench: system
	$(call apt_install,$(APT_BENCH))

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: system venv
	$(VENV)/bin/debleed demo

test: system venv
	$(PY) -m pytest $(PYTEST_ARGS)

# Reproduces the shipped denoisers (fixed seeds; resumes from train-cache/ checkpoints; about
# 110 minutes on 2 cores for the mic-only models): 48 kHz from scratch, a 48 kHz fine-tuning stage
# with the SI-SDR term weighted 10 times higher, then 44.1 kHz fine-tuned from that with the same
# loss. Then the small informed models (hi-hat and overhead mics and the key; models/README.md):
# 48 kHz from scratch with the key as one feature (about 5 minutes of rendering and 40-55 minutes
# on one torch thread), a 48 kHz stage with the key and all reference mics dropped in half the
# examples (15 minutes), then five 48 kHz fine-tuning stages of 1500 steps (13 minutes each on two
# threads): the key filter, the key 7 ms ahead of the audio (the key lead), the snare level loss,
# half the examples at a loud stage's bleed, the key's direct path to the mask; three more of
# 1500 steps (12-14 minutes each): a snare level under the clean snare's counted 4 times, the
# bleed loss, a lower learning rate; and 44.1 kHz fine-tuned from that (5 minutes of rendering,
# 5 of training); last, both exported with the key's values raised to the power 0.4 (the key
# power: ghost notes' keys lifted toward the accents'; no training): about 4.7 hours in all.
TRAIN_STEPS_48K    ?= 7000
TRAIN_STEPS_48K_FT ?= 1000
TRAIN_STEPS_44K1   ?= 1000
TRAIN_SISDR_FT     ?= 0.5
TRAIN_THREADS      ?= 2
TRAIN_STEPS_INF_48K  ?= 2400
TRAIN_STEPS_INF_48K_FT ?= 800
TRAIN_STEPS_INF_STAGE ?= 1500
TRAIN_INF_DROP       := --drop-key 0.3 --drop-ref 0.3 --drop-all-refs 0.3
# stages 8-10: a ghost note lost costs 4 times the bleed passed under it
TRAIN_INF_GHOST      := --key-mask --snare-level-weight 3 --snare-deficit-weight 4 --loud-share 0.5
TRAIN_STEPS_INF_44K1 ?= 500
# the shipped informed models hear their key's values raised to this power (weights unchanged)
TRAIN_INF_KEY_POWER  := 0.4
TRAIN_SISDR_INF      ?= 0.2
train: system venv
	$(PY) -m pip install -q -e '.[train,test]'
	mkdir -p train-cache
	$(PY) -m debleed.models.train --rate 48000 --steps $(TRAIN_STEPS_48K) --threads $(TRAIN_THREADS) \
	  --out train-cache/snare_denoiser_48k_base.onnx --log train-cache/train_48k.jsonl
	$(PY) -m debleed.models.train --rate 48000 --steps $(TRAIN_STEPS_48K_FT) --threads $(TRAIN_THREADS) --lr 3e-4 \
	  --sisdr-weight $(TRAIN_SISDR_FT) --init train-cache/ckpt_48k.pt --ckpt-name ckpt_48k_ft.pt \
	  --log train-cache/train_48k_ft.jsonl
	$(PY) -m debleed.models.train --rate 44100 --steps $(TRAIN_STEPS_44K1) --threads $(TRAIN_THREADS) --lr 3e-4 \
	  --sisdr-weight $(TRAIN_SISDR_FT) --init train-cache/ckpt_48k_ft.pt --log train-cache/train_44k1.jsonl
	$(PY) -m debleed.models.train --arch informed-frame-key --rate 48000 --steps $(TRAIN_STEPS_INF_48K) --batch 10 --threads 1 \
	  --sisdr-weight $(TRAIN_SISDR_INF) --ckpt-name ckpt_48k_informed.pt \
	  --out train-cache/snare_denoiser_48k_informed_base.onnx --log train-cache/train_48k_informed.jsonl
	$(PY) -m debleed.models.train --rate 48000 --steps $(TRAIN_STEPS_INF_48K_FT) --batch 10 --threads 1 \
	  --lr 3e-4 --sisdr-weight $(TRAIN_SISDR_INF) --drop-key 0.5 --drop-all-refs 0.5 \
	  --init train-cache/ckpt_48k_informed.pt --ckpt-name ckpt_48k_informed_ft.pt \
	  --out train-cache/snare_denoiser_48k_informed_frame_key.onnx --log train-cache/train_48k_informed_ft.jsonl
	$(PY) -m debleed.models.train --arch informed --key-lead-ms 0 --rate 48000 --steps $(TRAIN_STEPS_INF_STAGE) --batch 10 \
	  --threads 2 --lr 5e-4 --sisdr-weight $(TRAIN_SISDR_INF) $(TRAIN_INF_DROP) \
	  --init-onnx train-cache/snare_denoiser_48k_informed_frame_key.onnx --ckpt-name ckpt_48k_informed_key.pt \
	  --out train-cache/snare_denoiser_48k_informed_key.onnx --log train-cache/train_48k_informed_key.jsonl
	$(PY) -m debleed.models.train --key-lead-ms 7 --rate 48000 --steps $(TRAIN_STEPS_INF_STAGE) --batch 10 \
	  --threads 2 --lr 5e-4 --sisdr-weight $(TRAIN_SISDR_INF) $(TRAIN_INF_DROP) \
	  --init-onnx train-cache/snare_denoiser_48k_informed_key.onnx --ckpt-name ckpt_48k_informed_lead.pt \
	  --out train-cache/snare_denoiser_48k_informed_lead.onnx --log train-cache/train_48k_informed_lead.jsonl
	$(PY) -m debleed.models.train --snare-level-weight 3 --rate 48000 --steps $(TRAIN_STEPS_INF_STAGE) --batch 10 \
	  --threads 2 --lr 5e-4 --sisdr-weight $(TRAIN_SISDR_INF) $(TRAIN_INF_DROP) \
	  --init-onnx train-cache/snare_denoiser_48k_informed_lead.onnx --ckpt-name ckpt_48k_informed_ghost.pt \
	  --out train-cache/snare_denoiser_48k_informed_ghost.onnx --log train-cache/train_48k_informed_ghost.jsonl
	$(PY) -m debleed.models.train --snare-level-weight 3 --loud-share 0.5 --rate 48000 --steps $(TRAIN_STEPS_INF_STAGE) \
	  --batch 10 --threads 2 --lr 5e-4 --sisdr-weight $(TRAIN_SISDR_INF) $(TRAIN_INF_DROP) \
	  --init-onnx train-cache/snare_denoiser_48k_informed_ghost.onnx --ckpt-name ckpt_48k_informed_loud.pt \
	  --out train-cache/snare_denoiser_48k_informed_loud.onnx --log train-cache/train_48k_informed_loud.jsonl
	$(PY) -m debleed.models.train --key-mask --snare-level-weight 3 --loud-share 0.5 --rate 48000 \
	  --steps $(TRAIN_STEPS_INF_STAGE) --batch 10 --threads 2 --lr 5e-4 --sisdr-weight $(TRAIN_SISDR_INF) $(TRAIN_INF_DROP) \
	  --init-onnx train-cache/snare_denoiser_48k_informed_loud.onnx --ckpt-name ckpt_48k_informed_kmask.pt \
	  --out train-cache/snare_denoiser_48k_informed_kmask.onnx --log train-cache/train_48k_informed_kmask.jsonl
	$(PY) -m debleed.models.train $(TRAIN_INF_GHOST) --rate 48000 --steps $(TRAIN_STEPS_INF_STAGE) --batch 10 \
	  --threads 2 --lr 5e-4 --sisdr-weight $(TRAIN_SISDR_INF) $(TRAIN_INF_DROP) \
	  --init-onnx train-cache/snare_denoiser_48k_informed_kmask.onnx --ckpt-name ckpt_48k_informed_deficit.pt \
	  --out train-cache/snare_denoiser_48k_informed_deficit.onnx --log train-cache/train_48k_informed_deficit.jsonl
	$(PY) -m debleed.models.train $(TRAIN_INF_GHOST) --bleed-weight 0.5 --rate 48000 --steps $(TRAIN_STEPS_INF_STAGE) \
	  --batch 10 --threads 2 --lr 5e-4 --sisdr-weight $(TRAIN_SISDR_INF) $(TRAIN_INF_DROP) \
	  --init-onnx train-cache/snare_denoiser_48k_informed_deficit.onnx --ckpt-name ckpt_48k_informed_bleed.pt \
	  --out train-cache/snare_denoiser_48k_informed_bleed.onnx --log train-cache/train_48k_informed_bleed.jsonl
	$(PY) -m debleed.models.train $(TRAIN_INF_GHOST) --bleed-weight 0.5 --rate 48000 --steps $(TRAIN_STEPS_INF_STAGE) \
	  --batch 10 --threads 2 --lr 2e-4 --sisdr-weight $(TRAIN_SISDR_INF) $(TRAIN_INF_DROP) \
	  --init-onnx train-cache/snare_denoiser_48k_informed_bleed.onnx --ckpt-name ckpt_48k_informed_settle.pt \
	  --out train-cache/snare_denoiser_48k_informed_settle.onnx --log train-cache/train_48k_informed_settle.jsonl
	$(PY) -m debleed.models.train --rate 44100 --steps $(TRAIN_STEPS_INF_44K1) --batch 10 --threads 2 --lr 3e-4 \
	  --sisdr-weight $(TRAIN_SISDR_INF) $(TRAIN_INF_GHOST) --bleed-weight 0.5 $(TRAIN_INF_DROP) \
	  --init-onnx train-cache/snare_denoiser_48k_informed_settle.onnx --ckpt-name ckpt_44k1_informed.pt \
	  --out train-cache/snare_denoiser_44k1_informed_settle.onnx --log train-cache/train_44k1_informed.jsonl
	$(PY) -m debleed.models.train --rate 48000 --steps 0 --batch 10 --key-power $(TRAIN_INF_KEY_POWER) \
	  --init-onnx train-cache/snare_denoiser_48k_informed_settle.onnx --ckpt-name ckpt_48k_informed_keypower.pt \
	  --out models/snare_denoiser_48k_informed.onnx
	$(PY) -m debleed.models.train --rate 44100 --steps 0 --batch 10 --key-power $(TRAIN_INF_KEY_POWER) \
	  --init-onnx train-cache/snare_denoiser_44k1_informed_settle.onnx --ckpt-name ckpt_44k1_informed_keypower.pt \
	  --out models/snare_denoiser_44k1_informed.onnx

bench: system-bench venv
	$(VENV)/bin/debleed bench --out bench-report

clean:
	rm -rf $(VENV) bench-report demo-out .pytest_cache
	@echo 'train-cache/ (rendered scenes, checkpoints) is kept; remove it by hand'
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
