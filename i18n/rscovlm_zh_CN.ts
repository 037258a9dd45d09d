<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="zh_CN">
  <context>
    <name>RSCoVLM</name>
    <message>
      <source>The map canvas shows nothing yet: zoom to your raster first.</source>
      <translation>地图画布上还没有显示内容：请先缩放到您的栅格。</translation>
    </message>
    <message>
      <source>Choose the vector layer whose selected features outline the area.</source>
      <translation>请选择一个矢量图层，用其选中的要素划定区域。</translation>
    </message>
    <message>
      <source>Draw a rectangle on the map first (click “Draw”, then drag on the map).</source>
      <translation>请先在地图上绘制矩形（点击“绘制”，然后在地图上拖动）。</translation>
    </message>
    <message>
      <source>No features are selected in “{name}”: select the polygons that outline the area first.</source>
      <translation>“{name}”中没有选中的要素：请先选择划定区域的多边形。</translation>
    </message>
    <message>
      <source>The selected features of “{name}” have no area: select polygons rather than points.</source>
      <translation>“{name}”中选中的要素没有面积：请选择多边形而不是点。</translation>
    </message>
    <message>
      <source>Raster layer</source>
      <translation>栅格图层</translation>
    </message>
    <message>
      <source>Whole layer</source>
      <translation>整个图层</translation>
    </message>
    <message>
      <source>Drawn rectangle</source>
      <translation>绘制的矩形</translation>
    </message>
    <message>
      <source>Canvas extent</source>
      <translation>画布范围</translation>
    </message>
    <message>
      <source>Draw rectangle</source>
      <translation>绘制矩形</translation>
    </message>
    <message>
      <source>Drag a rectangle on the map; Esc cancels</source>
      <translation>在地图上拖出一个矩形；按 Esc 取消</translation>
    </message>
    <message>
      <source>Area</source>
      <translation>区域</translation>
    </message>
    <message>
      <source>Ask a question</source>
      <translation>提出问题</translation>
    </message>
    <message>
      <source>Describe the region</source>
      <translation>描述区域</translation>
    </message>
    <message>
      <source>Classify the scene</source>
      <translation>场景分类</translation>
    </message>
    <message>
      <source>Find an object</source>
      <translation>查找目标</translation>
    </message>
    <message>
      <source>Task</source>
      <translation>任务</translation>
    </message>
    <message>
      <source>Question</source>
      <translation>问题</translation>
    </message>
    <message>
      <source>e.g. airport, farmland, harbor, residential</source>
      <translation>例如：airport, farmland, harbor, residential</translation>
    </message>
    <message>
      <source>Scene classes</source>
      <translation>场景类别</translation>
    </message>
    <message>
      <source>Zoom in</source>
      <translation>放大</translation>
    </message>
    <message>
      <source>Let the model pick a part of the region and look at it at full resolution</source>
      <translation>让模型选取区域中的一部分，并以全分辨率查看</translation>
    </message>
    <message>
      <source>Ask</source>
      <translation>提问</translation>
    </message>
    <message>
      <source>Cancel</source>
      <translation>取消</translation>
    </message>
    <message>
      <source>New conversation</source>
      <translation>新对话</translation>
    </message>
    <message>
      <source>Forget the earlier questions and answers; the next question starts afresh</source>
      <translation>忘记之前的问答；下一个问题将重新开始</translation>
    </message>
    <message>
      <source>Drag a rectangle on the map; press Esc to cancel.</source>
      <translation>在地图上拖出一个矩形；按 Esc 取消。</translation>
    </message>
    <message>
      <source>Region drawn: type a question and click Ask.</source>
      <translation>已绘制区域：请输入问题并点击“提问”。</translation>
    </message>
    <message>
      <source>Drawing cancelled.</source>
      <translation>已取消绘制。</translation>
    </message>
    <message>
      <source>You</source>
      <translation>您</translation>
    </message>
    <message>
      <source>New conversation.</source>
      <translation>新对话。</translation>
    </message>
    <message>
      <source>New conversation: the next question starts afresh.</source>
      <translation>新对话：下一个问题将重新开始。</translation>
    </message>
    <message>
      <source>RSCoVLM</source>
      <translation>RSCoVLM</translation>
    </message>
    <message>
      <source>the whole region shown to the model</source>
      <translation>向模型展示的整个区域</translation>
    </message>
    <message>
      <source>Object</source>
      <translation>目标</translation>
    </message>
    <message>
      <source>e.g. How many ships are docked here?</source>
      <translation>例如：这里停靠了多少艘船？</translation>
    </message>
    <message>
      <source>e.g. the white ship near the pier</source>
      <translation>例如：码头附近的白色船只</translation>
    </message>
    <message>
      <source>A click has no area: drag to draw a rectangle, or press Esc.</source>
      <translation>单击没有面积：请拖动以绘制矩形，或按 Esc。</translation>
    </message>
    <message>
      <source>The region has no area in the raster's CRS: draw a larger one over the imagery.</source>
      <translation>该区域在栅格的坐标参考系中没有面积：请在影像上绘制一个更大的区域。</translation>
    </message>
    <message>
      <source>The raster or the region changed: a new conversation starts.</source>
      <translation>栅格或区域已更改：开始新的对话。</translation>
    </message>
    <message>
      <source>Cancelling…</source>
      <translation>正在取消…</translation>
    </message>
    <message>
      <source>Question cancelled.</source>
      <translation>已取消提问。</translation>
    </message>
    <message>
      <source>The backend returned no answer.</source>
      <translation>后端没有返回回答。</translation>
    </message>
    <message>
      <source>(the model gave an empty answer)</source>
      <translation>（模型给出了空回答）</translation>
    </message>
    <message>
      <source>Answered; the region of interest is in the layer “{name}”.</source>
      <translation>已回答；感兴趣区域位于图层“{name}”中。</translation>
    </message>
    <message>
      <source>Zoomed in.</source>
      <translation>已放大。</translation>
    </message>
    <message>
      <source>the backend gave no reason.</source>
      <translation>后端未给出原因。</translation>
    </message>
    <message>
      <source>Draw a rectangle on the map first (Draw rectangle), or choose the canvas extent or the whole layer.</source>
      <translation>请先在地图上绘制矩形（绘制矩形），或选择画布范围或整个图层。</translation>
    </message>
    <message>
      <source>Choose a raster layer to ask about.</source>
      <translation>请选择要提问的栅格图层。</translation>
    </message>
    <message>
      <source>The question is empty: type what you want to know about the imagery.</source>
      <translation>问题为空：请输入您想了解的关于影像的内容。</translation>
    </message>
    <message>
      <source>Describe the object to find, e.g. “the white ship near the pier”.</source>
      <translation>请描述要查找的目标，例如“码头附近的白色船只”。</translation>
    </message>
    <message>
      <source>List the scene classes to choose from, separated by commas.</source>
      <translation>请列出可供选择的场景类别，用逗号分隔。</translation>
    </message>
    <message>
      <source>Asking about {name}…</source>
      <translation>正在询问关于 {name} 的问题…</translation>
    </message>
    <message>
      <source>The next question starts a new conversation.</source>
      <translation>下一个问题将开始新的对话。</translation>
    </message>
    <message>
      <source>The object's box is drawn on the map.</source>
      <translation>目标的边框已绘制在地图上。</translation>
    </message>
    <message>
      <source>The model did not give a box.</source>
      <translation>模型没有给出边框。</translation>
    </message>
    <message>
      <source>The region cannot be expressed in the raster's CRS ({crs}): {error}. Draw it over the imagery.</source>
      <translation>该区域无法用栅格的坐标参考系（{crs}）表示：{error}。请在影像上绘制。</translation>
    </message>
    <message>
      <source>Zoomed in on {width} x {height} raster pixels at column {col}, row {row}.</source>
      <translation>已放大到第 {col} 列、第 {row} 行处的 {width} x {height} 个栅格像素。</translation>
    </message>
    <message>
      <source>Closest class: {label}</source>
      <translation>最接近的类别：{label}</translation>
    </message>
    <message>
      <source>Not zoomed in: {reason}</source>
      <translation>未放大：{reason}</translation>
    </message>
    <message>
      <source>RSCoVLM: asking about the imagery</source>
      <translation>RSCoVLM：正在询问影像</translation>
    </message>
    <message>
      <source>The question failed unexpectedly: {error}</source>
      <translation>提问意外失败：{error}</translation>
    </message>
    <message>
      <source>none</source>
      <translation>无</translation>
    </message>
    <message>
      <source>Model</source>
      <translation>模型</translation>
    </message>
    <message>
      <source>Adapter</source>
      <translation>适配器</translation>
    </message>
    <message>
      <source>Data type</source>
      <translation>数据类型</translation>
    </message>
    <message>
      <source>Quantization</source>
      <translation>量化</translation>
    </message>
    <message>
      <source>Attention</source>
      <translation>注意力实现</translation>
    </message>
    <message>
      <source>Queue</source>
      <translation>队列</translation>
    </message>
    <message>
      <source>Version</source>
      <translation>版本</translation>
    </message>
    <message>
      <source>Not checked yet.</source>
      <translation>尚未检查。</translation>
    </message>
    <message>
      <source>Backend URL</source>
      <translation>后端地址</translation>
    </message>
    <message>
      <source>default: ~/.config/rscovlm/token</source>
      <translation>默认：~/.config/rscovlm/token</translation>
    </message>
    <message>
      <source>Token file</source>
      <translation>令牌文件</translation>
    </message>
    <message>
      <source>rscovlm on PATH, or the backend environment's python</source>
      <translation>PATH 中的 rscovlm，或后端环境中的 python</translation>
    </message>
    <message>
      <source>Backend program</source>
      <translation>后端程序</translation>
    </message>
    <message>
      <source>model folder or Hugging Face id</source>
      <translation>模型文件夹或 Hugging Face ID</translation>
    </message>
    <message>
      <source>Connect</source>
      <translation>连接</translation>
    </message>
    <message>
      <source>Ask the backend whether it answers and what it runs on</source>
      <translation>询问后端是否响应以及它运行在什么设备上</translation>
    </message>
    <message>
      <source>Start local backend</source>
      <translation>启动本地后端</translation>
    </message>
    <message>
      <source>Stop</source>
      <translation>停止</translation>
    </message>
    <message>
      <source>Output of a backend started here appears here.</source>
      <translation>在此启动的后端的输出会显示在这里。</translation>
    </message>
    <message>
      <source>Browse</source>
      <translation>浏览</translation>
    </message>
    <message>
      <source>Backend token file</source>
      <translation>后端令牌文件</translation>
    </message>
    <message>
      <source>Model folder</source>
      <translation>模型文件夹</translation>
    </message>
    <message>
      <source>GPU</source>
      <translation>GPU</translation>
    </message>
    <message>
      <source>Not connected.</source>
      <translation>未连接。</translation>
    </message>
    <message>
      <source>Connected; the status is not readable (see above).</source>
      <translation>已连接；但无法读取状态（见上文）。</translation>
    </message>
    <message>
      <source>CPU: will be slow</source>
      <translation>CPU：速度会很慢</translation>
    </message>
    <message>
      <source>{queued} waiting, {running} running (at most {max})</source>
      <translation>{queued} 个等待，{running} 个运行中（最多 {max} 个）</translation>
    </message>
    <message>
      <source>Checking the backend at {url}…</source>
      <translation>正在检查位于 {url} 的后端…</translation>
    </message>
    <message>
      <source>{used:.1f} of {total:.1f} GB in use</source>
      <translation>已使用 {used:.1f} GB，共 {total:.1f} GB</translation>
    </message>
    <message>
      <source>The backend does not answer. {reason}</source>
      <translation>后端没有响应。{reason}</translation>
    </message>
    <message>
      <source>The backend answers at {url}.</source>
      <translation>位于 {url} 的后端已响应。</translation>
    </message>
    <message>
      <source>Device: {device}</source>
      <translation>设备：{device}</translation>
    </message>
    <message>
      <source>unknown</source>
      <translation>未知</translation>
    </message>
    <message>
      <source>Set the model (a folder or a Hugging Face id) in the Backend tab before starting a local backend.</source>
      <translation>启动本地后端之前，请在“后端”选项卡中设置模型（文件夹或 Hugging Face ID）。</translation>
    </message>
    <message>
      <source>The backend program could not be started.</source>
      <translation>无法启动后端程序。</translation>
    </message>
    <message>
      <source>The backend URL {url} is not on this computer: a local backend listens on 127.0.0.1.</source>
      <translation>后端地址 {url} 不在本机上：本地后端监听 127.0.0.1。</translation>
    </message>
    <message>
      <source>The backend stopped (exit code {code}).</source>
      <translation>后端已停止（退出代码 {code}）。</translation>
    </message>
    <message>
      <source>“{program}” could not be started: set the backend's Python or rscovlm program in the Backend tab.</source>
      <translation>无法启动“{program}”：请在“后端”选项卡中设置后端的 Python 或 rscovlm 程序。</translation>
    </message>
    <message>
      <source>start it with `rscovlm serve --model MODEL_FOLDER_OR_ID`, or check the URL in the plugin settings</source>
      <translation>请使用 `rscovlm serve --model 模型文件夹或ID` 启动它，或检查插件设置中的地址</translation>
    </message>
    <message>
      <source>The backend accepted the job but did not say its id.</source>
      <translation>后端接受了任务，但没有给出任务 ID。</translation>
    </message>
    <message>
      <source>The program at {url} answered (HTTP {status}) but not like the RSCoVLM backend: is another program using that port?</source>
      <translation>位于 {url} 的程序有响应（HTTP {status}），但不像 RSCoVLM 后端：是否有其他程序占用了该端口？</translation>
    </message>
    <message>
      <source>The backend at {url} answered HTTP {status} without an explanation.</source>
      <translation>位于 {url} 的后端返回了 HTTP {status}，但没有说明原因。</translation>
    </message>
    <message>
      <source>The backend at {url} did not answer in time</source>
      <translation>位于 {url} 的后端没有及时响应</translation>
    </message>
    <message>
      <source>The backend at {url} does not answer</source>
      <translation>位于 {url} 的后端没有响应</translation>
    </message>
    <message>
      <source>The backend refused the token in {path}: it may belong to another backend; restart the backend or choose its token file in the plugin settings.</source>
      <translation>后端拒绝了 {path} 中的令牌：它可能属于另一个后端；请重启后端，或在插件设置中选择它的令牌文件。</translation>
    </message>
    <message>
      <source>No backend token was found in {path}: start the backend once with `rscovlm serve` so that it writes one, or choose the token file in the plugin settings.</source>
      <translation>在 {path} 中未找到后端令牌：请先用 `rscovlm serve` 启动一次后端以生成令牌，或在插件设置中选择令牌文件。</translation>
    </message>
    <message>
      <source>This result has no scores: the model's engine gave no token probabilities</source>
      <translation>此结果没有得分：模型引擎未提供词元概率</translation>
    </message>
    <message>
      <source>Classes</source>
      <translation>类别</translation>
    </message>
    <message>
      <source>All</source>
      <translation>全选</translation>
    </message>
    <message>
      <source>None</source>
      <translation>全不选</translation>
    </message>
    <message>
      <source>Your own classes, comma separated (e.g. wind turbine, solar panel)</source>
      <translation>自定义类别，用逗号分隔（例如 wind turbine, solar panel）</translation>
    </message>
    <message>
      <source> px</source>
      <translation> 像素</translation>
    </message>
    <message>
      <source>Tile size</source>
      <translation>切片大小</translation>
    </message>
    <message>
      <source>Overlap</source>
      <translation>重叠</translation>
    </message>
    <message>
      <source>Max mode (largest model input: finer, slower)</source>
      <translation>最大模式（最大模型输入：更精细、更慢）</translation>
    </message>
    <message>
      <source>Selected features of a vector layer</source>
      <translation>矢量图层的选中要素</translation>
    </message>
    <message>
      <source>Features of</source>
      <translation>要素所在图层</translation>
    </message>
    <message>
      <source>Draw</source>
      <translation>绘制</translation>
    </message>
    <message>
      <source>No rectangle drawn.</source>
      <translation>尚未绘制矩形。</translation>
    </message>
    <message>
      <source>Replace previous results</source>
      <translation>替换之前的结果</translation>
    </message>
    <message>
      <source>Remove earlier result layers of the same raster instead of keeping them</source>
      <translation>删除同一栅格之前的结果图层，而不是保留它们</translation>
    </message>
    <message>
      <source>Detect</source>
      <translation>检测</translation>
    </message>
    <message>
      <source>Minimum score</source>
      <translation>最低得分</translation>
    </message>
    <message>
      <source>Hide the objects fewer overlapping tiles agreed on</source>
      <translation>隐藏一致的重叠切片数较少的目标</translation>
    </message>
    <message>
      <source>Minimum tiles agreeing</source>
      <translation>最少一致切片数</translation>
    </message>
    <message>
      <source>Export…</source>
      <translation>导出…</translation>
    </message>
    <message>
      <source>Write the last result layer to a Shapefile, GeoPackage or GeoJSON file</source>
      <translation>将最近的结果图层写入 Shapefile、GeoPackage 或 GeoJSON 文件</translation>
    </message>
    <message>
      <source>Drag a rectangle on the map…</source>
      <translation>请在地图上拖出一个矩形…</translation>
    </message>
    <message>
      <source>Hide the objects the model was less sure of (its score: the probability it gave the tokens that wrote the object)</source>
      <translation>隐藏模型把握较低的目标（得分：模型赋予写出该目标的词元的概率）</translation>
    </message>
    <message>
      <source>GeoPackage (*.gpkg)</source>
      <translation>GeoPackage (*.gpkg)</translation>
    </message>
    <message>
      <source>ESRI Shapefile (*.shp)</source>
      <translation>ESRI Shapefile (*.shp)</translation>
    </message>
    <message>
      <source>GeoJSON (*.geojson)</source>
      <translation>GeoJSON (*.geojson)</translation>
    </message>
    <message>
      <source>Export detections</source>
      <translation>导出检测结果</translation>
    </message>
    <message>
      <source>Detection not started.</source>
      <translation>检测未开始。</translation>
    </message>
    <message>
      <source>Detection cancelled.</source>
      <translation>检测已取消。</translation>
    </message>
    <message>
      <source>{layer} detections</source>
      <translation>{layer} 检测结果</translation>
    </message>
    <message>
      <source>Exported to {path}.</source>
      <translation>已导出到 {path}。</translation>
    </message>
    <message>
      <source>Rectangle of {w:.0f} × {h:.0f} map units.</source>
      <translation>矩形大小为 {w:.0f} × {h:.0f} 地图单位。</translation>
    </message>
    <message>
      <source>Detecting objects in {name}…</source>
      <translation>正在检测 {name} 中的目标…</translation>
    </message>
    <message>
      <source>Detection over “{name}” asks the model about {tiles} tiles of {size} px. On a GPU that takes roughly a second per tile with the 7B model, much longer on a CPU. Start it? (A smaller area: canvas extent or a drawn rectangle.)</source>
      <translation>对“{name}”的检测需要模型处理 {tiles} 个 {size} 像素的瓦片。7B 模型在 GPU 上每个瓦片约需一秒，在 CPU 上要慢得多。是否开始？（较小的范围：画布范围或绘制的矩形。）</translation>
    </message>
    <message>
      <source>The backend returned no result.</source>
      <translation>后端没有返回结果。</translation>
    </message>
    <message>
      <source>“{name}” is not a local file: the chosen area is written to a temporary GeoTIFF of {width} × {height} pixels for the backend.</source>
      <translation>“{name}”不是本地文件：所选区域将被写入一个 {width} × {height} 像素的临时 GeoTIFF 供后端使用。</translation>
    </message>
    <message>
      <source>Backend</source>
      <translation>后端</translation>
    </message>
    <message>
      <source>Asking questions about the map is not available in this version.</source>
      <translation>此版本不支持对地图提问。</translation>
    </message>
    <message>
      <source>The backend reported that the job failed.</source>
      <translation>后端报告任务失败。</translation>
    </message>
    <message>
      <source>Class</source>
      <translation>类别</translation>
    </message>
    <message>
      <source>Tiles agreeing</source>
      <translation>一致的切片数</translation>
    </message>
    <message>
      <source>Score</source>
      <translation>得分</translation>
    </message>
    <message>
      <source>Tile</source>
      <translation>切片</translation>
    </message>
    <message>
      <source>Area (m²)</source>
      <translation>面积（平方米）</translation>
    </message>
    <message>
      <source>Cannot write “{name}”: choose a name ending in .shp, .gpkg or .geojson.</source>
      <translation>无法写入“{name}”：请选择以 .shp、.gpkg 或 .geojson 结尾的文件名。</translation>
    </message>
    <message>
      <source>The folder {folder} does not exist: choose another place.</source>
      <translation>文件夹 {folder} 不存在：请选择其他位置。</translation>
    </message>
    <message>
      <source>Could not write {path}: {message}</source>
      <translation>无法写入 {path}：{message}</translation>
    </message>
    <message>
      <source>plane</source>
      <translation>飞机</translation>
    </message>
    <message>
      <source>ship</source>
      <translation>船只</translation>
    </message>
    <message>
      <source>storage tank</source>
      <translation>储罐</translation>
    </message>
    <message>
      <source>baseball diamond</source>
      <translation>棒球场</translation>
    </message>
    <message>
      <source>tennis court</source>
      <translation>网球场</translation>
    </message>
    <message>
      <source>basketball court</source>
      <translation>篮球场</translation>
    </message>
    <message>
      <source>ground track field</source>
      <translation>田径场</translation>
    </message>
    <message>
      <source>harbor</source>
      <translation>港口</translation>
    </message>
    <message>
      <source>bridge</source>
      <translation>桥梁</translation>
    </message>
    <message>
      <source>large vehicle</source>
      <translation>大型车辆</translation>
    </message>
    <message>
      <source>small vehicle</source>
      <translation>小型车辆</translation>
    </message>
    <message>
      <source>helicopter</source>
      <translation>直升机</translation>
    </message>
    <message>
      <source>roundabout</source>
      <translation>环岛</translation>
    </message>
    <message>
      <source>soccer ball field</source>
      <translation>足球场</translation>
    </message>
    <message>
      <source>swimming pool</source>
      <translation>游泳池</translation>
    </message>
    <message>
      <source>Tick at least one class, or type your own, to say what to look for.</source>
      <translation>请至少勾选一个类别，或输入自定义类别，以说明要查找的目标。</translation>
    </message>
    <message>
      <source>Choose a raster layer to detect objects in.</source>
      <translation>请选择要检测目标的栅格图层。</translation>
    </message>
    <message>
      <source>The layer “{name}” has no pixel size of its own: zoom to the area and use the canvas extent.</source>
      <translation>图层“{name}”没有自身的像素大小：请缩放到该区域并使用画布范围。</translation>
    </message>
    <message>
      <source>The class name “{name}” is too long: use at most 64 characters.</source>
      <translation>类别名“{name}”太长：最多使用 64 个字符。</translation>
    </message>
    <message>
      <source>The layer “{name}” is not a raster file (its source is {provider}): choose a layer loaded from a GeoTIFF or another local raster file.</source>
      <translation>图层“{name}”不是栅格文件（其数据源为 {provider}）：请选择从 GeoTIFF 或其他本地栅格文件加载的图层。</translation>
    </message>
    <message>
      <source>The file of layer “{name}” ({path}) cannot be found: it may have moved; reload the layer and try again.</source>
      <translation>找不到图层“{name}”的文件（{path}）：它可能已被移动；请重新加载图层后再试。</translation>
    </message>
    <message>
      <source>The chosen area does not overlap the layer “{name}”: choose an area over the layer.</source>
      <translation>所选区域与图层“{name}”不重叠：请选择位于该图层上的区域。</translation>
    </message>
    <message>
      <source>The area of “{name}” is {width} × {height} pixels at the layer's resolution, too large to download: zoom in and use the canvas extent, or draw a smaller rectangle.</source>
      <translation>按图层分辨率，“{name}”的区域为 {width} × {height} 像素，太大无法下载：请放大并使用画布范围，或绘制一个更小的矩形。</translation>
    </message>
    <message>
      <source>The overlap ({overlap} px) must be at least 0 and smaller than the tile size ({size} px).</source>
      <translation>重叠（{overlap} 像素）必须不小于 0 且小于切片大小（{size} 像素）。</translation>
    </message>
    <message>
      <source>The chosen area cannot be expressed in the CRS of “{name}”: choose an area over the layer.</source>
      <translation>所选区域无法用“{name}”的坐标参考系表示：请选择位于该图层上的区域。</translation>
    </message>
    <message>
      <source>&amp;RSCoVLM</source>
      <translation>&amp;RSCoVLM</translation>
    </message>
    <message>
      <source>RSCoVLM object detection</source>
      <translation>RSCoVLM 目标检测</translation>
    </message>
    <message>
      <source>Show or hide the RSCoVLM panel</source>
      <translation>显示或隐藏 RSCoVLM 面板</translation>
    </message>
    <message>
      <source>Detect objects</source>
      <translation>检测目标</translation>
    </message>
    <message>
      <source>Finds objects of the given classes in a raster with the RSCoVLM backend and writes them as oriented polygons in the raster's CRS. Classes: comma separated; empty means the 15 DOTA classes. The backend must be running (see the RSCoVLM panel).</source>
      <translation>使用 RSCoVLM 后端在栅格中查找指定类别的目标，并以栅格坐标参考系中的有向多边形写出。类别：用逗号分隔；留空表示 15 个 DOTA 类别。后端必须正在运行（见 RSCoVLM 面板）。</translation>
    </message>
    <message>
      <source>Ask about a region</source>
      <translation>询问区域</translation>
    </message>
    <message>
      <source>Asks the RSCoVLM backend a question about a raster, or an area of it, and returns the answer. With zoom on, the model first picks the part of the image that matters and looks at it closely; that region of interest can be written as a polygon layer.</source>
      <translation>向 RSCoVLM 后端询问关于栅格或其中某个区域的问题，并返回回答。开启放大时，模型会先选出影像中关键的部分并仔细查看；该感兴趣区域可以写出为多边形图层。</translation>
    </message>
    <message>
      <source>The layer is not a local file: writing the area to a temporary GeoTIFF.</source>
      <translation>该图层不是本地文件：正在将区域写入临时 GeoTIFF。</translation>
    </message>
    <message>
      <source>Cancelled.</source>
      <translation>已取消。</translation>
    </message>
    <message>
      <source>Classes (comma separated; empty: all DOTA classes)</source>
      <translation>类别（用逗号分隔；留空：全部 DOTA 类别）</translation>
    </message>
    <message>
      <source>Tile size (px)</source>
      <translation>切片大小（像素）</translation>
    </message>
    <message>
      <source>Overlap (px)</source>
      <translation>重叠（像素）</translation>
    </message>
    <message>
      <source>Max mode (largest model input)</source>
      <translation>最大模式（最大模型输入）</translation>
    </message>
    <message>
      <source>Area (empty: whole layer)</source>
      <translation>区域（留空：整个图层）</translation>
    </message>
    <message>
      <source>Detections</source>
      <translation>检测结果</translation>
    </message>
    <message>
      <source>Let the model zoom in first</source>
      <translation>让模型先放大</translation>
    </message>
    <message>
      <source>Region of interest</source>
      <translation>感兴趣区域</translation>
    </message>
    <message>
      <source>Answer</source>
      <translation>回答</translation>
    </message>
    <message>
      <source>Type a question to ask about the raster.</source>
      <translation>请输入关于栅格的问题。</translation>
    </message>
    <message>
      <source>{count} objects found.</source>
      <translation>找到 {count} 个目标。</translation>
    </message>
    <message>
      <source>Answer: {answer}</source>
      <translation>回答：{answer}</translation>
    </message>
    <message>
      <source>Job {job} queued on the backend.</source>
      <translation>任务 {job} 已在后端排队。</translation>
    </message>
    <message>
      <source>The layer's data could not be prepared for export.</source>
      <translation>无法为导出准备图层数据。</translation>
    </message>
    <message>
      <source>The export was cancelled.</source>
      <translation>导出已取消。</translation>
    </message>
    <message>
      <source>The layer's source could not be opened for export ({error}): check that it still loads in QGIS.</source>
      <translation>无法打开图层的数据源进行导出（{error}）：请检查它在 QGIS 中是否仍能加载。</translation>
    </message>
    <message>
      <source>Writing the layer to {path} failed (error {code}): check the free space in the temporary folder.</source>
      <translation>将图层写入 {path} 失败（错误 {code}）：请检查临时文件夹的可用空间。</translation>
    </message>
    <message>
      <source>Writing the layer to a temporary GeoTIFF…</source>
      <translation>正在将图层写入临时 GeoTIFF…</translation>
    </message>
    <message>
      <source>Waiting in the backend's queue.</source>
      <translation>正在后端队列中等待。</translation>
    </message>
    <message>
      <source>{done} / {total} tiles</source>
      <translation>{done} / {total} 个切片</translation>
    </message>
    <message>
      <source>{h} h {m} min</source>
      <translation>{h} 小时 {m} 分钟</translation>
    </message>
    <message>
      <source>RSCoVLM: checking the backend</source>
      <translation>RSCoVLM：正在检查后端</translation>
    </message>
    <message>
      <source>{count} objects found in {name}.</source>
      <translation>在 {name} 中找到 {count} 个目标。</translation>
    </message>
    <message>
      <source>{s} s</source>
      <translation>{s} 秒</translation>
    </message>
    <message>
      <source>{m} min {s} s</source>
      <translation>{m} 分 {s} 秒</translation>
    </message>
    <message>
      <source>Waiting in the backend's queue (place {place}).</source>
      <translation>正在后端队列中等待（第 {place} 位）。</translation>
    </message>
    <message>
      <source>about {time} left</source>
      <translation>大约还需 {time}</translation>
    </message>
    <message>
      <source>{n} dense tiles were asked again as sub-tiles.</source>
      <translation>{n} 个密集瓦片已拆分为子瓦片重新询问。</translation>
    </message>
    <message>
      <source>{n} answers were still cut by the token budget: objects there may be missing.</source>
      <translation>{n} 个回答仍被令牌预算截断：那里可能遗漏目标。</translation>
    </message>
    <message>
      <source>{n} tiles failed and have no answer: run the detection again.</source>
      <translation>{n} 个瓦片失败，没有回答：请重新运行检测。</translation>
    </message>
    <message>
      <source>RSCoVLM: detecting objects in {name}</source>
      <translation>RSCoVLM：正在检测 {name} 中的目标</translation>
    </message>
    <message>
      <source>Detection failed unexpectedly: {error}</source>
      <translation>检测意外失败：{error}</translation>
    </message>
    <message>
      <source>The backend reported that the job {state}.</source>
      <translation type="vanished">后端报告任务状态为 {state}。</translation>
    </message>
    <message>
      <source>The backend reported that the question failed.</source>
      <translation type="vanished">后端报告提问失败。</translation>
    </message>
  </context>
</TS>
