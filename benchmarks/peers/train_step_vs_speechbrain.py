"""One training step (forward, loss, backward, optimiser): the speech recipe's model against
the closest SpeechBrain model, on the same batch of real recordings, one process, alternating.

The batch: the ``--batch`` speechocean762 training utterances whose durations are nearest
``--seconds`` (the recipe's length-bucketed batches hold about 20 utterances of 4 s, at most
8000 padded frames), as 16 kHz waveforms with their character targets.

This project: the model of ``recipes/speechocean762_asr/config.yaml`` (the phone-menu
recipe's): log-mel features with SpecAugment, a convolution block (8 channels, stride 2),
pyramidal BLSTM 128 x 3, location attention 128, LSTM decoder 256, joint CTC-attention loss
(weight 0.5, label smoothing 0.1), as its trainer steps it in float32.

SpeechBrain: its CRDNN encoder and ``AttentionalRNNDecoder`` put together as its LibriSpeech
seq2seq recipe does (``Fbank``, global ``InputNormalization``, CRDNN, embedding, decoder,
CTC and sequence output layers, ``ctc_loss`` + ``nll_loss`` with the same weight and
smoothing), at the same widths: one CNN block of 8 channels (two 3 x 3 convolutions,
frequency pooling 2), time pooling by 8 so that the decoder attends over as many frames as
this project's (80 ms), BLSTM 128 x 3, no DNN block, location attention 128 (10 channels,
kernel 31), LSTM decoder 256, embeddings 64. SpeechBrain ships no pyramidal encoder: its
BLSTM layers all run at 80 ms, where this project's first two run at 20 and 40 ms, so its
encoder does less LSTM arithmetic (``encoder_lstm_gmacs_forward`` in the output).

Both sides use the same optimiser (fused AdamW, the recipe's learning rate and weight decay)
and gradient clipping, so the difference is the model and loss code. Times every
``--threads`` count. Run: ``python benchmarks/peers/train_step_vs_speechbrain.py``.
"""

import argparse

from common import (
    ROOT,
    add_common_arguments,
    alternate,
    corpus_folder,
    profile,
    report,
    run_in_peers_venv,
    speed_ratio,
    spread,
    with_threads,
)

run_in_peers_venv("speechbrain")

import speechbrain as sb  # noqa: E402
import torch  # noqa: E402
from speechbrain.lobes.models.CRDNN import CRDNN  # noqa: E402

from multimodal_s2s.allocator import reuse_freed_memory  # noqa: E402
from multimodal_s2s.config import load_config  # noqa: E402
from multimodal_s2s.data.audio import load_audio  # noqa: E402
from multimodal_s2s.data.base import pad_sequences  # noqa: E402
from multimodal_s2s.data.manifest import import_kaldi  # noqa: E402
from multimodal_s2s.models.ctc import joint_ctc_attention_loss  # noqa: E402
from multimodal_s2s.models.loss import token_loss  # noqa: E402
from multimodal_s2s.models.model import build_model  # noqa: E402
from multimodal_s2s.text import EOS_ID, PAD_ID, Tokenizer, teacher_forcing_pair  # noqa: E402

CONFIG = ROOT / "recipes" / "speechocean762_asr" / "config.yaml"


def real_batch(args: argparse.Namespace):
    """Waveforms ``(B, N)``, lengths ``(B,)``, decoder inputs and targets ``(B, L)`` of the
    chosen utterances, and the size of the recipe's vocabulary (every training character)."""
    records = import_kaldi(corpus_folder("speechocean762") / "train")
    chosen = sorted(records, key=lambda r: (abs(r["duration"] - args.seconds), r["id"]))
    chosen = chosen[: args.batch]
    tokenizer = Tokenizer.build([record["text"] for record in records], "char")
    waves, lengths = pad_sequences([load_audio(record["audio"]) for record in chosen])
    inputs, targets = teacher_forcing_pair([tokenizer.encode(r["text"]) for r in chosen])
    return waves, lengths, inputs, targets, len(tokenizer)


def optimiser(parameters, config):
    return torch.optim.AdamW(
        parameters,
        lr=config.train.learning_rate,
        weight_decay=config.train.weight_decay,
        fused=True,
    )


def ours(config, vocab: int, batch):
    """The recipe's model and a step as its trainer takes one (one process, float32)."""
    waves, lengths, inputs, targets = batch
    model = build_model(config, vocab).train()
    optimizer = optimiser(model.parameters(), config)

    def step(_):
        log_probs, _, encoded = model(waves, lengths, inputs)
        loss = token_loss(log_probs.float(), targets, config.loss.label_smoothing)
        loss = joint_ctc_attention_loss(model, encoded, targets, loss, config.loss.ctc_weight)
        loss = loss / (targets != PAD_ID).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        return float(loss.detach()), encoded.memory.size(1)

    return step, model


def speechbrain(config, vocab: int, batch):
    """SpeechBrain's CRDNN and attentional decoder at the recipe's widths, stepped as its
    LibriSpeech seq2seq recipe's ``fit_batch`` does."""
    waves, lengths, inputs, targets = batch
    encoder_config, decoder_config = config.encoder, config.decoder
    attention = decoder_config.attention
    convolutions = len(encoder_config.conv_channels)
    features = sb.lobes.features.Fbank(
        sample_rate=config.data.features.sample_rate,
        n_fft=400,
        n_mels=config.data.features.num_mel_bins,
    )
    normalize = sb.processing.features.InputNormalization(norm_type="global")
    encoder = CRDNN(
        input_shape=[None, None, config.data.features.num_mel_bins],
        activation=torch.nn.LeakyReLU,
        dropout=encoder_config.dropout,
        cnn_blocks=convolutions,
        cnn_channels=encoder_config.conv_channels,
        cnn_kernelsize=(3, 3),
        inter_layer_pooling_size=[2] * convolutions,
        time_pooling=True,
        time_pooling_size=2 ** (convolutions + encoder_config.num_layers),
        rnn_class=sb.nnet.RNN.LSTM,
        rnn_layers=encoder_config.num_layers + 1,
        rnn_neurons=encoder_config.hidden_dim,
        rnn_bidirectional=True,
        rnn_re_init=True,
        dnn_blocks=0,
    )
    memory_dim = 2 * encoder_config.hidden_dim
    embedding = sb.nnet.embedding.Embedding(vocab, decoder_config.embedding_dim)
    decoder = sb.nnet.RNN.AttentionalRNNDecoder(
        rnn_type="lstm",
        attn_type="location",
        hidden_size=decoder_config.hidden_dim,
        attn_dim=attention.dim,
        num_layers=decoder_config.num_layers,
        enc_dim=memory_dim,
        input_size=decoder_config.embedding_dim,
        channels=attention.channels,
        kernel_size=attention.kernel_size // 2,  # SpeechBrain's is 2 k + 1 wide
        re_init=True,
        dropout=decoder_config.dropout,
    )
    ctc_output = sb.nnet.linear.Linear(input_size=memory_dim, n_neurons=vocab)
    seq_output = sb.nnet.linear.Linear(input_size=decoder_config.hidden_dim, n_neurons=vocab)
    log_softmax = sb.nnet.activations.Softmax(apply_log=True)
    modules = torch.nn.ModuleList(
        [normalize, encoder, embedding, decoder, ctc_output, seq_output]
    ).train()
    optimizer = optimiser(modules.parameters(), config)
    # SpeechBrain's relative lengths; its CTC targets are the tokens without the end token
    wav_lens = lengths / lengths.max()
    tokens = targets[:, :-1].masked_fill(targets[:, :-1] == EOS_ID, PAD_ID)
    token_lens = (tokens != PAD_ID).sum(1) / tokens.size(1)
    eos_lens = (targets != PAD_ID).sum(1) / targets.size(1)
    weight = config.loss.ctc_weight

    def step(_):
        feats = normalize(features(waves), wav_lens)
        memory = encoder(feats.detach())
        outputs, _ = decoder(embedding(inputs), memory, wav_lens)
        p_seq = log_softmax(seq_output(outputs))
        p_ctc = log_softmax(ctc_output(memory))
        loss = weight * sb.nnet.losses.ctc_loss(p_ctc, tokens, wav_lens, token_lens, PAD_ID)
        loss = loss + (1 - weight) * sb.nnet.losses.nll_loss(
            p_seq, targets, length=eos_lens, label_smoothing=config.loss.label_smoothing
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), config.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad()
        return float(loss.detach()), memory.size(1)

    return step, modules


def encoder_lstm_macs(step, model: torch.nn.Module) -> int:
    """Multiply-adds of the ``nn.LSTM`` layers (the encoders'; both decoders use cells) in
    one forward pass of ``step``: each layer's weights times the padded frames it runs over."""
    total = []

    def count(module, inputs, _):
        frames = inputs[0].shape[0] * inputs[0].shape[1]
        weights = sum(p.numel() for n, p in module.named_parameters() if n.startswith("weight"))
        total.append(frames * weights)

    hooks = [
        m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.LSTM)
    ]
    try:
        step(None)
    finally:
        for hook in hooks:
            hook.remove()
    return sum(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=4.0)
    add_common_arguments(parser, threads=(1, 2))
    args = parser.parse_args()
    reuse_freed_memory()  # as the ms2s command line does
    config = load_config(CONFIG)
    *batch, vocab = real_batch(args)
    torch.manual_seed(args.seed)
    steps = {"ms2s": ours(config, vocab, batch), "speechbrain": speechbrain(config, vocab, batch)}
    memory_frames = {name: step(None)[1] for name, (step, _) in steps.items()}  # warm-up
    lstm_macs = {name: encoder_lstm_macs(step, model) for name, (step, model) in steps.items()}
    sides = {
        f"{name}_{threads}": with_threads(threads, step)
        for threads in args.threads
        for name, (step, _) in steps.items()
    }
    for side in sides.values():  # a warm-up at each thread count
        side(None)
    seconds, _ = alternate(sides, args.repeats)
    if args.profile:
        profile(sides, args.profile)
    waves, lengths, _, targets = batch
    result = {
        "benchmark": "training step, this project's speech recipe model vs SpeechBrain CRDNN "
        "+ AttentionalRNNDecoder",
        "batch": {
            "utterances": args.batch,
            "seconds": [round(float(lengths.min()) / 16000, 2), round(waves.size(1) / 16000, 2)],
            "target_tokens": int((targets != PAD_ID).sum()),
            "vocabulary": vocab,
        },
        "memory_frames": memory_frames,
        "encoder_lstm_gmacs_forward": {name: round(n / 1e9, 2) for name, n in lstm_macs.items()},
        "parameters": {
            name: sum(p.numel() for p in module.parameters()) for name, (_, module) in steps.items()
        },
        "repeats": args.repeats,
        "by_threads": {
            str(threads): {
                "ms2s": spread(seconds[f"ms2s_{threads}"]),
                "speechbrain": spread(seconds[f"speechbrain_{threads}"]),
                "ms2s_times_as_fast": speed_ratio(
                    seconds[f"speechbrain_{threads}"], seconds[f"ms2s_{threads}"]
                ),
            }
            for threads in args.threads
        },
    }
    report(result, args.output, ["speechbrain"])


if __name__ == "__main__":
    main()
