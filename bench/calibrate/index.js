// Busy worker for the CPU method: each request runs `n` rounds of integer arithmetic in
// JavaScript (?n=…, in calls of 1000 rounds), an adjustable amount of work in the isolate.
function rounds(x, from) {
  for (let i = from; i < from + 1000; i++) x = (Math.imul(x, 31) + i) | 0;
  return x;
}

export default {
  fetch(request) {
    const n = Number(new URL(request.url).searchParams.get('n') ?? 0);
    let x = 0;
    for (let i = 0; i < n; i += 1000) x = rounds(x, i);
    return new Response(x === 0.5 ? '' : 'Hello World!');
  },
};
