// AudioWorklet: collects the microphone's samples (at the context's rate, 16 kHz) into chunks and
// posts each with the context frame of its first sample, the clock the page schedules on.
class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = options.processorOptions.chunk;
    this.buffer = new Float32Array(this.size);
    this.filled = 0;
    this.start = 0;
  }

  process(inputs) {
    const input = inputs[0][0];
    if (!input) return true;
    let offset = 0;
    while (offset < input.length) {
      if (this.filled === 0) this.start = currentFrame + offset;
      const take = Math.min(this.size - this.filled, input.length - offset);
      this.buffer.set(input.subarray(offset, offset + take), this.filled);
      this.filled += take;
      offset += take;
      if (this.filled === this.size) {
        this.port.postMessage({ frame: this.start, samples: this.buffer });
        this.buffer = new Float32Array(this.size);
        this.filled = 0;
      }
    }
    return true;
  }
}
registerProcessor("capture", Capture);
