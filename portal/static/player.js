// The call page's "play from here" links: without this file each link opens the recording at
// its turn's time (a media fragment, `#t=<seconds>`); with it, the page's own player seeks
// there and plays, and the page stays. No dependency, nothing fetched but the recording.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var link = event.target instanceof Element ? event.target.closest("a[data-seek]") : null;
    var player = document.getElementById("recording");
    if (!link || !player) {
      return;
    }
    var seconds = parseFloat(link.getAttribute("data-seek"));
    if (!isFinite(seconds) || seconds < 0) {
      return;
    }
    event.preventDefault();
    player.currentTime = seconds;
    var playing = player.play();
    if (playing && playing.catch) {
      playing.catch(function () {});
    }
    player.focus();
  });
})();
