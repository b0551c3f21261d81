// Benchmark baseline: the smallest Worker, answering every request with a fixed text.
export default {
  fetch() {
    return new Response('Hello World!');
  },
};
