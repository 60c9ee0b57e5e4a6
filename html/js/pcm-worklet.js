// Runs on the audio thread: posts each render quantum of the input, mixed down to mono.
class PcmCapture extends AudioWorkletProcessor {
  process(inputs) {
    const input = inputs[0];
    if (input && input.length) {
      const out = new Float32Array(input[0].length);
      for (const ch of input) for (let i = 0; i < out.length; i++) out[i] += ch[i] / input.length;
      this.port.postMessage(out, [out.buffer]);
    }
    return true;
  }
}
registerProcessor('pcm-capture', PcmCapture);
