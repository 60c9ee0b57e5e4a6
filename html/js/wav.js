// Microphone capture as PCM with Web Audio, encoded as a 16-bit mono WAV in JavaScript:
// the pipeline and its capture take audio/wav at any rate (docs/directives.md).

export function encodeWav(chunks, sampleRate) {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const buf = new ArrayBuffer(44 + n * 2);
  const v = new DataView(buf);
  const ascii = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  ascii(0, 'RIFF'); v.setUint32(4, 36 + n * 2, true); ascii(8, 'WAVE');
  ascii(12, 'fmt '); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, sampleRate, true); v.setUint32(28, sampleRate * 2, true);
  v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  ascii(36, 'data'); v.setUint32(40, n * 2, true);
  let o = 44;
  for (const c of chunks) {
    for (let i = 0; i < c.length; i++, o += 2) {
      const s = Math.max(-1, Math.min(1, c[i]));
      v.setInt16(o, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
  }
  return new Blob([buf], { type: 'audio/wav' });
}

// start() asks for the microphone and collects its samples (mixed down to mono by the
// worklet); stop() ends the capture and resolves to { blob, seconds }.
export class Recorder {
  async start(onLevel) {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    // 16 kHz, as speech recognisers take it (and a third of 48 kHz's upload); the device's
    // own rate where the browser cannot resample its input
    try {
      this.ctx = new AudioContext({ sampleRate: 16000 });
      this.source = this.ctx.createMediaStreamSource(this.stream);
    } catch {
      if (this.ctx) this.ctx.close();
      this.ctx = new AudioContext();
      this.source = this.ctx.createMediaStreamSource(this.stream);
    }
    await this.ctx.audioWorklet.addModule(new URL('./pcm-worklet.js', import.meta.url));
    this.chunks = [];
    this.node = new AudioWorkletNode(this.ctx, 'pcm-capture', { numberOfOutputs: 0 });
    this.node.port.onmessage = (e) => {
      this.chunks.push(e.data);
      if (onLevel) {
        let peak = 0;
        for (let i = 0; i < e.data.length; i++) peak = Math.max(peak, Math.abs(e.data[i]));
        onLevel(peak);
      }
    };
    this.source.connect(this.node);
  }

  async stop() {
    this.source.disconnect();
    this.node.port.onmessage = null;
    for (const t of this.stream.getTracks()) t.stop();
    const rate = this.ctx.sampleRate;
    await this.ctx.close();
    const samples = this.chunks.reduce((a, c) => a + c.length, 0);
    return { blob: encodeWav(this.chunks, rate), seconds: samples / rate };
  }
}
