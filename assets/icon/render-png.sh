#!/usr/bin/env bash
# Draws ota-console.png (256×256) with ImageMagick's own primitives: the same shapes as
# ota-console.svg, so the bitmap needs no SVG renderer. Re-run after changing the SVG.
set -euo pipefail
cd "$(dirname "$0")"
convert -size 256x256 xc:none \
    -fill '#1f4e79' -draw "roundrectangle 8,8 247,247 48,48" \
    -fill none -stroke '#9ad0ff' -strokewidth 10 \
    -draw "line 65,91 71,85" -draw "line 71,85 78,80" -draw "line 78,80 86,75" -draw "line 86,75 94,72" -draw "line 94,72 102,69" -draw "line 102,69 111,67" -draw "line 111,67 119,65" -draw "line 119,65 128,65" -draw "line 128,65 137,65" -draw "line 137,65 145,67" -draw "line 145,67 154,69" -draw "line 154,69 162,72" -draw "line 162,72 170,75" -draw "line 170,75 178,80" -draw "line 178,80 185,85" -draw "line 185,85 191,91" \
    -draw "line 88,106 92,102" -draw "line 92,102 97,99" -draw "line 97,99 101,96" -draw "line 101,96 106,93" -draw "line 106,93 112,91" -draw "line 112,91 117,90" -draw "line 117,90 122,89" -draw "line 122,89 128,89" -draw "line 128,89 134,89" -draw "line 134,89 139,90" -draw "line 139,90 144,91" -draw "line 144,91 150,93" -draw "line 150,93 155,96" -draw "line 155,96 159,99" -draw "line 159,99 164,102" -draw "line 164,102 168,106" \
    -stroke none -fill '#e8f1fa' -draw "roundrectangle 72,132 184,224 12,12" \
    -draw "rectangle 84,122 94,132" -draw "rectangle 108,122 118,132" \
    -draw "rectangle 138,122 148,132" -draw "rectangle 162,122 172,132" \
    -draw "rectangle 84,224 94,234" -draw "rectangle 108,224 118,234" \
    -draw "rectangle 138,224 148,234" -draw "rectangle 162,224 172,234" \
    -fill '#32aa5a' -draw "polygon 128,146 158,178 140,178 140,208 116,208 116,178 98,178" \
    -depth 8 -strip ota-console.png
